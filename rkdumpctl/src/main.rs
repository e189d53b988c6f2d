//! rkdumpctl
fn main() {}
