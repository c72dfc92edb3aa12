//! `--argocd-metrics`: whether the controller and the repo-server export Argo CD's metric names
//! next to Flotilla's, instead of them, or not at all.

/// Which names the metrics are exported under.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ArgoCdMetrics {
    /// Flotilla's names only.
    #[default]
    Off,
    /// Argo CD's names next to Flotilla's.
    Also,
    /// Argo CD's names instead of the Flotilla series they stand for (Flotilla-only series,
    /// such as the queue's, stay).
    Instead,
}

impl ArgoCdMetrics {
    /// Whether the Flotilla series that have an Argo CD counterpart are exported.
    pub fn flotilla(self) -> bool {
        self != Self::Instead
    }

    /// Whether Argo CD's series are exported.
    pub fn argocd(self) -> bool {
        self != Self::Off
    }

    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Also => "also",
            Self::Instead => "instead",
        }
    }
}

impl std::fmt::Display for ArgoCdMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ArgoCdMetrics {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "off" | "" => Ok(Self::Off),
            "also" => Ok(Self::Also),
            "instead" => Ok(Self::Instead),
            other => Err(format!(
                "unknown Argo CD metrics mode {other:?} (use off, also or instead)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for m in [
            ArgoCdMetrics::Off,
            ArgoCdMetrics::Also,
            ArgoCdMetrics::Instead,
        ] {
            assert_eq!(m.to_string().parse::<ArgoCdMetrics>(), Ok(m));
        }
        assert!("sometimes".parse::<ArgoCdMetrics>().is_err());
        assert!(ArgoCdMetrics::Also.flotilla() && ArgoCdMetrics::Also.argocd());
        assert!(!ArgoCdMetrics::Instead.flotilla() && !ArgoCdMetrics::Off.argocd());
    }
}
