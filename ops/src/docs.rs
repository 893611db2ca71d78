//! The project's own documents stay whole: README.md gives the two commands (start, test) and
//! ARCHITECTURE.md describes every crate of the workspace. (An edit once emptied
//! ARCHITECTURE.md and nothing noticed.)

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn doc(name: &str) -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::read_to_string(root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn readme_and_architecture_are_whole() {
        let readme = doc("README.md");
        for want in [
            "cargo run --release -- up",
            "## Tests",
            "## Benchmarks",
            "Security",
        ] {
            assert!(readme.contains(want), "README.md lacks {want:?}");
        }
        let arch = doc("ARCHITECTURE.md");
        assert!(
            arch.len() > 20_000,
            "ARCHITECTURE.md is {} bytes",
            arch.len()
        );
        let cargo = doc("Cargo.toml");
        let members = cargo
            .lines()
            .find(|l| l.starts_with("members"))
            .expect("workspace members");
        for m in members.split('"').skip(1).step_by(2) {
            assert!(
                arch.contains(&format!("`{m}/`")),
                "ARCHITECTURE.md does not describe the crate in {m}/"
            );
        }
        for section in [
            "## Security",
            "## chunk",
            "## meta",
            "## client",
            "Permissions",
        ] {
            assert!(arch.contains(section), "ARCHITECTURE.md lacks {section:?}");
        }
    }
}
