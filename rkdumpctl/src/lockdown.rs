//! Explains a kexec refusal caused by kernel lockdown or a required image signature: what the
//! kernel wants (a crash kernel signed with a key it trusts, loaded with kexec_file_load) and
//! how to give it one (README.md#secure-boot-and-lockdown).

use std::fs;
use std::path::Path;

/// The active lockdown mode from `<sysfs>/kernel/security/lockdown` (`none [integrity]
/// confidentiality`: the bracketed one), if the file exists.
pub fn mode(sysfs_root: &Path) -> Option<String> {
    let text = fs::read_to_string(sysfs_root.join("kernel/security/lockdown")).ok()?;
    let start = text.find('[')?;
    let end = text[start..].find(']')? + start;
    Some(text[start + 1..end].to_string())
}

/// Whether kexec's message says a signature was wanted or lockdown refused the syscall.
fn signature_refusal(kexec_error: &str) -> bool {
    [
        "Key was rejected",
        "Required key not available",
        "signature",
        "Operation not permitted",
        "Permission denied",
        "EKEYREJECTED",
        "EPERM",
    ]
    .iter()
    .any(|m| kexec_error.contains(m))
}

/// The explanation for a failed load of `kernel`, when lockdown is on or kexec's message shows
/// a signature refusal; `None` otherwise.
pub fn hint(sysfs_root: &Path, kexec_error: &str, kernel: &Path) -> Option<String> {
    let locked = mode(sysfs_root).filter(|m| m != "none");
    if locked.is_none() && !signature_refusal(kexec_error) {
        return None;
    }
    let why = match &locked {
        Some(m) => format!(
            "the kernel is locked down ({m}): it refuses kexec_load and accepts through \
             kexec_file_load only a crash kernel signed with a key it trusts"
        ),
        None => {
            "the kernel requires a signed crash kernel (kexec_file_load signature check)".into()
        }
    };
    let k = kernel.display();
    Some(format!(
        "{why}; {k} is not signed by such a key. A signed image is needed:\n  \
         sbsign --key MOK.key --cert MOK.crt --output {k}.signed {k}\n  \
         mokutil --import MOK.der   (enroll the certificate; confirm at the next boot)\n  \
         then load {k}.signed with kexec_file_load: `rkdumpctl load --file-syscall --kernel {k}.signed`, \
         or `kernel = {k}.signed` and `syscall = file` in /etc/rkdump.conf\n  \
         (README.md, \"Secure Boot and lockdown\")"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_when_locked_down_or_signature_refused() {
        let d = std::env::temp_dir().join(format!("rkdumpctl-lockdown-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("kernel/security")).unwrap();
        let k = Path::new("/usr/lib/rkdump/bzImage");
        // No lockdown file, an unrelated failure: no hint.
        assert_eq!(
            hint(&d, "kexec failed with exit code 1: Cannot load", k),
            None
        );
        fs::write(
            d.join("kernel/security/lockdown"),
            "[none] integrity confidentiality\n",
        )
        .unwrap();
        assert_eq!(mode(&d).as_deref(), Some("none"));
        assert_eq!(hint(&d, "Cannot load", k), None);
        // Signature refusal without lockdown.
        let h = hint(&d, "kexec_file_load failed: Key was rejected by service", k).unwrap();
        assert!(h.contains("requires a signed crash kernel"), "{h}");
        fs::write(
            d.join("kernel/security/lockdown"),
            "none [integrity] confidentiality\n",
        )
        .unwrap();
        let h = hint(&d, "anything", k).unwrap();
        assert!(h.contains("locked down (integrity)"), "{h}");
        assert!(h.contains(
            "sbsign --key MOK.key --cert MOK.crt --output /usr/lib/rkdump/bzImage.signed"
        ));
        assert!(h.contains("--file-syscall"));
        fs::remove_dir_all(&d).unwrap();
    }
}
