//! Limits the issues set, checked: each figure is printed as `PASS` or `FAIL` beside its limit, and a benchmark
//! with any `FAIL` exits non-zero, so that `cargo xtask bench` fails when a figure misses its limit.

/// The figures of one benchmark and their limits.
#[derive(Debug, Default)]
pub struct Verdicts {
    checks: Vec<Check>,
}

#[derive(Debug)]
struct Check {
    name: String,
    figure: f64,
    limit: f64,
    at_least: bool,
    unit: &'static str,
}

impl Check {
    fn passed(&self) -> bool {
        if self.at_least { self.figure >= self.limit } else { self.figure <= self.limit }
    }

    fn line(&self) -> String {
        let word = if self.passed() { "PASS" } else { "FAIL" };
        let bound = if self.at_least { "at least" } else { "at most" };
        format!(
            "{word} {}: {} (limit: {bound} {})",
            self.name,
            format_figure(self.figure, self.unit),
            format_figure(self.limit, self.unit)
        )
    }
}

/// A figure with its unit: whole numbers as they are and above 100 without decimals, two decimals down to 0.1 (so
/// that a ratio of 0.49 is not shown as 0.5), four below (so that 1/446 is not shown as 0.00).
fn format_figure(value: f64, unit: &str) -> String {
    let number = match value.abs() {
        a if a >= 100.0 || value.fract() == 0.0 => format!("{value:.0}"),
        a if a >= 0.1 => format!("{value:.2}"),
        _ => format!("{value:.4}"),
    };
    if unit.is_empty() { number } else { format!("{number} {unit}") }
}

impl Verdicts {
    /// `figure` must be `limit` or more.
    pub fn at_least(&mut self, name: impl Into<String>, figure: f64, limit: f64, unit: &'static str) {
        self.checks.push(Check { name: name.into(), figure, limit, at_least: true, unit });
    }

    /// `figure` must be `limit` or less.
    pub fn at_most(&mut self, name: impl Into<String>, figure: f64, limit: f64, unit: &'static str) {
        self.checks.push(Check { name: name.into(), figure, limit, at_least: false, unit });
    }

    /// A condition that holds or not (every acknowledged message delivered, say), shown as 1 or 0 against 1.
    pub fn holds(&mut self, name: impl Into<String>, holds: bool) {
        self.at_least(name, f64::from(u8::from(holds)), 1.0, "");
    }

    /// Prints every verdict, one per line, and fails naming the figures that missed their limits.
    pub fn finish(self) -> anyhow::Result<()> {
        for check in &self.checks {
            println!("  {}", check.line());
        }
        let failed: Vec<&str> = self.checks.iter().filter(|c| !c.passed()).map(|c| c.name.as_str()).collect();
        anyhow::ensure!(failed.is_empty(), "{} missed its limit: {}", failed.len(), failed.join(", "));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_past_its_limit_fails_and_one_at_it_passes() {
        let mut verdicts = Verdicts::default();
        verdicts.at_least("ratio", 0.50, 0.50, "");
        verdicts.at_most("throttled", 0.9, 1.0, "%");
        assert!(verdicts.finish().is_ok());
        let mut verdicts = Verdicts::default();
        verdicts.at_least("ratio", 0.49, 0.50, "");
        verdicts.at_least("rate", 120_000.0, 100_000.0, "messages/s");
        let error = verdicts.finish().unwrap_err().to_string();
        assert_eq!(error, "1 missed its limit: ratio");
        let line = Check { name: "ratio".into(), figure: 0.494, limit: 0.5, at_least: true, unit: "" }.line();
        assert_eq!(line, "FAIL ratio: 0.49 (limit: at least 0.50)");
        assert_eq!(format_figure(1.0 / 446.0, ""), "0.0022");
        assert_eq!(format_figure(0.0, ""), "0");
        assert_eq!(format_figure(161_655.4, "messages/s"), "161655 messages/s");
    }
}
