//! The printed table, and how its numbers are written.

/// One row of the table: what was measured, and the result.
#[derive(Debug)]
pub struct Row(pub String, pub String);

/// Rows of the table, and the notes under it that say what they are.
#[derive(Debug, Default)]
pub struct Section {
    /// The rows.
    pub rows: Vec<Row>,
    /// Printed under the table.
    pub notes: Vec<String>,
}

/// Prints `rows` as a Markdown table, columns padded to line up.
pub fn print_table(rows: &[Row]) {
    let (h0, h1) = ("measurement", "result");
    let w0 = rows
        .iter()
        .map(|r| r.0.chars().count())
        .max()
        .unwrap_or(0)
        .max(h0.len());
    let w1 = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .max(h1.len());
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w - s.chars().count()));
    println!("| {} | {} |", pad(h0, w0), pad(h1, w1));
    println!("|-{}-|-{}-|", "-".repeat(w0), "-".repeat(w1));
    for Row(a, b) in rows {
        println!("| {} | {} |", pad(a, w0), pad(b, w1));
    }
}

/// A rate with three significant digits and a k or M suffix: `950`,
/// `31.2k`, `2.05M`.
pub fn rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{}M", significant(per_s / 1e6, 3))
    } else if per_s >= 1e3 {
        format!("{}k", significant(per_s / 1e3, 3))
    } else {
        format!("{per_s:.0}")
    }
}

/// A ratio with two significant digits: `0.0031×`, `0.57×`, `2.1×`, `14×`.
pub fn ratio(r: f64) -> String {
    format!("{}×", significant(r, 2))
}

/// `x` rounded to `digits` significant digits, without trailing noise.
fn significant(x: f64, digits: i32) -> String {
    if !x.is_finite() || x <= 0.0 {
        return format!("{x}");
    }
    let magnitude = x.log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    format!("{x:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_ratios_read_well() {
        assert_eq!(rate(950.4), "950");
        assert_eq!(rate(31_249.0), "31.2k");
        assert_eq!(rate(312_490.0), "312k");
        assert_eq!(rate(2_054_000.0), "2.05M");
        assert_eq!(ratio(0.003_14), "0.0031×");
        assert_eq!(ratio(0.571), "0.57×");
        assert_eq!(ratio(2.14), "2.1×");
        assert_eq!(ratio(14.2), "14×");
    }
}
