//! A hardware profile applied to the node's configuration: the plan derived from the profile and
//! the detected host (`edgeblob_hw::plan`) gives the shards, the cores they are pinned to and
//! each shard's device queue depth, wherever the configuration does not set them itself.

use std::path::Path;

use edgeblob_hw::detect::{detect, Root};
use edgeblob_hw::{plan, profile, Plan, Profile};

use crate::config::Config;

/// Applies `which` (`auto`: the shipped profile that fits the host best; else a profile file)
/// to `config`, reading the host under `root`. Returns the plan, for the start's log; None when
/// `auto` found no profile for this host (the node then runs on its defaults, as without one).
/// A named profile that does not load is an error.
pub fn apply(config: &mut Config, which: &str, root: &Path) -> Result<Option<Plan>, String> {
    let host = detect(&Root(root.to_path_buf()));
    let chosen: Profile = if which == "auto" {
        let dir = profile::default_dir();
        let all = profile::load_dir(&dir).map_err(|e| format!("hardware profile auto: {e}"))?;
        let vm_size =
            (host.platform == "azure").then(|| edgeblob_hw::imds::vm_size(&config.azure.metadata_endpoint)).flatten();
        match profile::best(&all, &host, vm_size.as_deref()) {
            Ok(p) => p.clone(),
            Err(e) => {
                tracing::warn!(
                    "hardware profile auto ({}): {e}; running on the configuration's defaults",
                    dir.display()
                );
                return Ok(None);
            }
        }
    } else {
        let text = std::fs::read_to_string(which).map_err(|e| format!("hardware profile {which}: {e}"))?;
        Profile::from_toml(&text).map_err(|e| format!("hardware profile {which}: {e}"))?
    };
    let plan = plan::derive(&chosen, &host);
    let e = &mut config.engine;
    if e.shards.is_none() {
        e.shards = Some(plan.shards);
    }
    if e.cpus.is_none() {
        e.cpus = Some(plan.shard_cpus.iter().map(|&c| c as usize).collect());
    }
    if !config.queue_depth_set {
        e.queue_depth = plan.io_depth;
    }
    Ok(Some(plan))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn repo(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
    }

    #[test]
    fn a_profile_sets_what_the_configuration_leaves_unset() {
        let l32 = repo("hw-profiles/azure/Standard_L32as_v5.toml");
        let host = repo("hw/tests/hosts/l32as_v5");
        let mut c = Config::from_toml("").unwrap();
        let plan = apply(&mut c, l32.to_str().unwrap(), &host).unwrap().unwrap();
        assert_eq!(plan.shards, 30);
        assert_eq!(c.engine.shards, Some(30));
        assert_eq!(c.engine.queue_depth, 34, "1024 a device over the 30 shards on it");
        let cpus = c.engine.cpus.clone().unwrap();
        assert_eq!((cpus.len(), cpus.contains(&0), cpus.contains(&16), cpus[0]), (30, false, false, 1));

        let mut c = Config::from_toml("[engine]\nshards = 2\nqueue_depth = 64\ncpus = [0, 1]\n").unwrap();
        apply(&mut c, l32.to_str().unwrap(), &host).unwrap();
        assert_eq!(
            (c.engine.shards, c.engine.queue_depth, c.engine.cpus),
            (Some(2), 64, Some(vec![0, 1])),
            "the configuration wins"
        );

        let mut c = Config::from_toml("").unwrap();
        let err = apply(&mut c, repo("hw-profiles/azure/l-series.csv").to_str().unwrap(), &host).unwrap_err();
        assert!(err.contains("hardware profile"), "{err}");
        assert_eq!(c.engine.shards, None, "nothing applied from a profile that did not load");
    }
}
