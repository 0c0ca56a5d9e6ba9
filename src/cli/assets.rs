//! `community-sync generate-assets DIR` (hidden): the man page and shell completions, generated
//! from the command-line definition itself so they never drift. Used by packaging/build-deb.sh.

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;
use clap_complete::Shell;

/// Writes `DIR/man/community-sync.1` and `DIR/completions/{community-sync.bash,_community-sync,community-sync.fish}`.
pub fn generate(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let man_dir = dir.join("man");
    let comp_dir = dir.join("completions");
    for d in [&man_dir, &comp_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut written = Vec::new();
    let cmd = super::Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .context("cannot render the man page")?;
    let man = man_dir.join("community-sync.1");
    std::fs::write(&man, page).with_context(|| format!("cannot write {}", man.display()))?;
    written.push(man);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut c = cmd.clone();
        let path = clap_complete::generate_to(shell, &mut c, "community-sync", &comp_dir)
            .with_context(|| {
                format!(
                    "cannot write the {shell} completion into {}",
                    comp_dir.display()
                )
            })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_man_page_and_three_completions() {
        let dir = tempfile::tempdir().unwrap();
        let files = super::generate(dir.path()).unwrap();
        assert_eq!(files.len(), 4);
        let man = std::fs::read_to_string(dir.path().join("man/community-sync.1")).unwrap();
        assert!(
            man.contains(".TH community-sync"),
            "{}",
            &man[..200.min(man.len())]
        );
        assert!(man.contains("backup"));
        for f in [
            "community-sync.bash",
            "_community-sync",
            "community-sync.fish",
        ] {
            let text = std::fs::read_to_string(dir.path().join("completions").join(f)).unwrap();
            assert!(text.contains("report"), "{f}");
        }
    }
}
