//! `community-sync generate-assets DIR` (hidden): the man pages and shell completions,
//! generated from the command-line definition itself so they never drift. Used by
//! packaging/build-deb.sh. `community-sync(1)` lists the commands as `community-sync-sync(1)`
//! and so on, so every one of those pages is generated too (nested ones such as
//! `community-sync-review-list(1)` included).

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;
use clap_complete::Shell;

/// Writes `DIR/man/community-sync.1` and a page per command (`community-sync-sync.1`, ...),
/// and `DIR/completions/{community-sync.bash,_community-sync,community-sync.fish}`.
pub fn generate(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let man_dir = dir.join("man");
    let comp_dir = dir.join("completions");
    for d in [&man_dir, &comp_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut written = Vec::new();
    let cmd = super::Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man_dir)
        .with_context(|| format!("cannot write the man pages into {}", man_dir.display()))?;
    let mut pages: Vec<std::path::PathBuf> = std::fs::read_dir(&man_dir)
        .with_context(|| format!("cannot list {}", man_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    written.extend(pages);
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
    /// Every `community-sync-…(1)` a page names is a page that was written.
    #[test]
    fn every_page_a_page_refers_to_is_generated() {
        let dir = tempfile::tempdir().unwrap();
        super::generate(dir.path()).unwrap();
        let man = dir.path().join("man");
        let mut referenced = 0;
        for entry in std::fs::read_dir(&man).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for (i, _) in text.match_indices("community\\-sync\\-") {
                let rest = &text[i..];
                let Some(end) = rest.find("(1)") else {
                    continue;
                };
                let name = rest[..end].replace("\\-", "-");
                if name.contains(char::is_whitespace) {
                    continue;
                }
                referenced += 1;
                assert!(
                    man.join(format!("{name}.1")).is_file(),
                    "{name}(1) is referred to but not generated"
                );
            }
        }
        assert!(
            referenced > 15,
            "the main page lists the commands: {referenced}"
        );
        for page in [
            "community-sync-sync.1",
            "community-sync-review-list.1",
            "community-sync-sim.1",
        ] {
            assert!(man.join(page).is_file(), "{page}");
        }
        assert!(
            !man.join("community-sync-generate-assets.1").exists(),
            "hidden"
        );
    }

    /// `--help` and the man pages explain every argument (an argument without text shows as
    /// a bare name in both).
    #[test]
    fn every_argument_has_help_text() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>, seen: &mut usize) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                *seen += 1;
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing, seen);
            }
        }
        let (mut missing, mut seen) = (Vec::new(), 0);
        let mut cmd = crate::cli::Cli::command();
        cmd.build();
        walk(&cmd, "community-sync", &mut missing, &mut seen);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
        assert!(
            seen > 100,
            "every command's arguments were looked at: {seen}"
        );
    }

    #[test]
    fn writes_man_page_and_three_completions() {
        let dir = tempfile::tempdir().unwrap();
        let files = super::generate(dir.path()).unwrap();
        assert!(files.len() > 20, "{files:?}");
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
