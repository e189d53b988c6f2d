//! NVMe Identify Controller and Identify Namespace data (controller-supplied).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkdump_devices::nvme::{ControllerId, NamespaceId};

fuzz_target!(|data: &[u8]| {
    let _ = ControllerId::parse(data);
    let _ = NamespaceId::parse(data);
});
