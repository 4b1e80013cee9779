//! What the `tollgate` command warns about when it starts.

use std::process::Command;

fn check_config(admin_key: &str) -> String {
    let data_dir = tempfile::tempdir().expect("temporary folder");
    let output = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("check-config")
        .current_dir(data_dir.path())
        .env("TOLLGATE_BOOTSTRAP__ADMIN_API_KEY", admin_key)
        .env("TOLLGATE_LOG", "warn")
        .output()
        .expect("run tollgate");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_short_admin_key_is_warned_about_and_a_long_one_is_not() {
    let short = check_config("admin123");
    assert!(short.contains("shorter than 32 characters"), "{short}");
    assert!(!short.contains("admin123"), "the key was logged: {short}");

    let long = check_config("a-long-admin-key-imported-from-the-old-system");
    assert!(!long.contains("shorter than"), "{long}");
}
