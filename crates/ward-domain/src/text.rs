//! Text as Ward writes it into files people open.

/// Makes a cell safe to open in a spreadsheet: a value starting with `=`, `+`, `-`, `@`,
/// tab or CR is prefixed with `'` so it is never evaluated as a formula.
pub fn spreadsheet_safe(value: &str) -> String {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("-2+3"), "'-2+3");
        assert_eq!(spreadsheet_safe("MRN1"), "MRN1");
    }
}
