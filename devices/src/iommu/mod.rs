//! IOMMUs a crashed kernel may have left on: the ACPI tables that describe them and what rkdump
//! does to them before the dump's DMA starts (docs/device-reinit.md#iommu).
//!
//! Intel VT-d ([`dmar`] parses the DMAR table, [`vtd`] programs each remapping unit): after every
//! PCI function was quiesced (bus mastering off, so only the dump device's driver turns DMA back
//! on), rkdump logs and clears the fault records, then turns DMA translation, interrupt
//! remapping and queued invalidation off, each confirmed in the global status register. Its
//! drivers then DMA to physical addresses, as on a machine without an IOMMU.
//!
//! Why off rather than rkdump's own pass-through context entries: the old kernel's root and
//! context tables live in memory the crash may have corrupted, and building new ones needs
//! invalidation through whichever interface (register or queued) the old kernel left enabled;
//! turning translation off depends on two registers per unit and nothing in memory. The cost:
//! with translation off, a device that ignores its cleared bus-master bit could DMA anywhere,
//! where pass-through entries for the dump device alone would have blocked every other one.
//!
//! AMD-Vi (IVRS) is detected ([`ivrs`]) and reported, not programmed: nothing here has run on it.

pub mod dmar;
pub mod ivrs;
pub mod vtd;
