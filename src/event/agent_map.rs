//! `--map-agent FROM_NS/FROM_AGENT=TO_NS/TO_AGENT`: where a recorded agent's keys go in the
//! target.

use std::sync::Arc;

/// `--map-agent FROM_NS/FROM_AGENT=TO_NS/TO_AGENT`: where a recorded agent's keys go.
#[derive(Debug, Clone, Default)]
pub struct AgentMap(Vec<(String, String, Arc<str>, Arc<str>)>);

impl AgentMap {
    pub fn parse(items: &[String]) -> Result<AgentMap, String> {
        let mut map = Vec::new();
        for item in items {
            let bad = || {
                format!(
                    "--map-agent {item:?}: expected FROM_NAMESPACE/FROM_AGENT=TO_NAMESPACE/TO_AGENT"
                )
            };
            let (from, to) = item.split_once('=').ok_or_else(bad)?;
            let (fns, fa) = from.trim().split_once('/').ok_or_else(bad)?;
            let (tns, ta) = to.trim().split_once('/').ok_or_else(bad)?;
            if [fns, fa, tns, ta].iter().any(|s| s.is_empty()) {
                return Err(bad());
            }
            if map
                .iter()
                .any(|(n, a, _, _): &(String, String, Arc<str>, Arc<str>)| n == fns && a == fa)
            {
                return Err(format!("--map-agent: {from} is mapped twice"));
            }
            map.push((
                fns.to_string(),
                fa.to_string(),
                Arc::from(tns),
                Arc::from(ta),
            ));
        }
        Ok(AgentMap(map))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where `namespace/agent_id` goes (itself unless mapped).
    pub fn map(&self, namespace: &Arc<str>, agent_id: &Arc<str>) -> (Arc<str>, Arc<str>) {
        for (n, a, tn, ta) in &self.0 {
            if **n == **namespace && **a == **agent_id {
                return (tn.clone(), ta.clone());
            }
        }
        (namespace.clone(), agent_id.clone())
    }

    /// The `from` agents that no source channel has (a typo would silently map nothing).
    pub fn unknown(&self, channels: &[(String, String, u64)]) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, a, _, _)| !channels.iter().any(|(cn, ca, _)| cn == n && ca == a))
            .map(|(n, a, _, _)| format!("{n}/{a}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_map_parses_and_maps() {
        let m = AgentMap::parse(&["prod/a=staging/b".to_string()]).unwrap();
        let (n, a) = m.map(&Arc::from("prod"), &Arc::from("a"));
        assert_eq!((&*n, &*a), ("staging", "b"));
        let (n, a) = m.map(&Arc::from("prod"), &Arc::from("c"));
        assert_eq!((&*n, &*a), ("prod", "c"));
        for bad in ["prod/a", "prod=b/c", "/a=b/c", "a/b=c/", "a/b=c"] {
            let e = AgentMap::parse(&[bad.to_string()]).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        let e = AgentMap::parse(&["a/b=c/d".into(), "a/b=e/f".into()]).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        assert_eq!(
            m.unknown(&[("prod".into(), "x".into(), 1)]),
            vec!["prod/a".to_string()]
        );
    }
}
