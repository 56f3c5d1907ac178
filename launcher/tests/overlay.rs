//! With the real qemu-img (installed by tests/setup.sh, never skipped): the
//! overlay `vmlan up` makes has the base image as its backing file, and a full
//! clone has none and the size asked for (`qemu-img info --output=json`).

use std::path::Path;

use vmlan_launcher::process::run;
use vmlan_launcher::qemu::{disk_argvs, info_argv};
use vmlan_launcher::state::StateDir;

fn info(p: &Path) -> serde_json::Value {
    serde_json::from_str(&run(&info_argv(p)).unwrap()).unwrap()
}

#[test]
fn overlay_backs_onto_the_base_and_full_copy_stands_alone() {
    let dir = std::env::temp_dir().join(format!("vmlan-overlay-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let base = dir.join("base.qcow2");
    let mk = ["qemu-img", "create", "-f", "qcow2", base.to_str().unwrap(), "16M"];
    run(&mk.map(String::from)).unwrap();
    let text = "[cluster]\nname = \"o\"\n[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\n\
                [defaults]\nimage = \"base.qcow2\"\n[[node]]\nname = \"a\"\n\
                [[node]]\nname = \"b\"\nclone = \"full\"\ndisk_size = \"32M\"\n";
    std::fs::write(dir.join("c.toml"), text).unwrap();
    let c = vmlan_launcher::cluster::load(&dir.join("c.toml")).unwrap();
    let sd = StateDir {
        root: dir.join("state"),
    };
    for n in &c.nodes {
        for argv in disk_argvs(n, &sd) {
            run(&argv).unwrap();
        }
    }
    let a = info(&sd.overlay("a"));
    assert_eq!(a["format"], "qcow2");
    assert_eq!(a["backing-filename"], base.display().to_string(), "{a}");
    assert_eq!(a["backing-filename-format"], "qcow2", "{a}");
    assert_eq!(a["virtual-size"], 16 * 1024 * 1024);
    let b = info(&sd.overlay("b"));
    assert!(b.get("backing-filename").is_none(), "{b}");
    assert_eq!(b["virtual-size"], 32 * 1024 * 1024);
    std::fs::remove_dir_all(&dir).unwrap();
}
