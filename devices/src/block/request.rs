//! Request checking and splitting: every driver refuses the same malformed requests and cuts
//! transfers into pieces its commands can carry.

/// Checks a transfer against the device: whole blocks, `align`-aligned source, inside the
/// device, no address wrap. Returns why not.
pub fn check_request(
    lba: u64,
    phys: u64,
    len: u64,
    block_shift: u32,
    blocks: u64,
    align: u64,
) -> Result<(), &'static str> {
    if len & ((1 << block_shift) - 1) != 0 {
        return Err("length is not a whole number of blocks");
    }
    if !phys.is_multiple_of(align) {
        return Err("buffer is misaligned");
    }
    if phys.checked_add(len).is_none() {
        return Err("buffer wraps the address space");
    }
    match lba.checked_add(len >> block_shift) {
        Some(end) if end <= blocks => Ok(()),
        _ => Err("beyond the end of the device"),
    }
}

/// Splits a transfer of `len` bytes at (`lba`, `phys`) into `(lba, phys, len)` pieces of at most
/// `max` bytes, each a whole number of `1 << block_shift` blocks.
pub fn split(
    lba: u64,
    phys: u64,
    len: u64,
    block_shift: u32,
    max: u64,
) -> impl Iterator<Item = (u64, u64, u64)> + Clone {
    let max = ((max >> block_shift) << block_shift).max(1 << block_shift);
    let mut done = 0u64;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let n = (len - done).min(max);
        let item = (
            lba.wrapping_add(done >> block_shift),
            phys.wrapping_add(done),
            n,
        );
        done += n;
        Some(item)
    })
}
