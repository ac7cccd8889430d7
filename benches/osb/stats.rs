//! Latency percentiles and the number formats of the report.

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Summary {
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
}

pub(crate) fn summarize(mut v: Vec<u64>) -> Summary {
    if v.is_empty() {
        return Summary::default();
    }
    v.sort_unstable();
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Summary {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: v[v.len() - 1],
    }
}

pub(crate) fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

pub(crate) fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Two significant digits, rounded down.
pub(crate) fn round_rate(x: f64) -> f64 {
    if x < 10.0 {
        return x.max(1.0).floor();
    }
    let magnitude = 10f64.powi(x.log10().floor() as i32 - 1);
    (x / magnitude).floor() * magnitude
}
