//! Replays every saved fuzz input on stable: the corpora (`fuzz/corpus/<target>/`) and every
//! input that ever crashed a harness (`fuzz/regressions/<target>/`, kept forever as tests).
use std::path::Path;

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = rd
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            let data = std::fs::read(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), data))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_saved_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut total = 0;
    for (name, f) in shale_fuzz::TARGETS {
        for kind in ["corpus", "regressions"] {
            for (file, data) in inputs(&root.join(kind).join(name)) {
                let r = std::panic::catch_unwind(|| f(&data));
                assert!(r.is_ok(), "{kind}/{name}/{file} panics");
                total += 1;
            }
        }
        // The empty input, and a few shapes every decoder must survive.
        for data in [&b""[..], &[0u8; 64][..], &[0xffu8; 64][..]] {
            f(data);
        }
    }
    assert!(total > 0, "no saved fuzz inputs found under {root:?}");
}
