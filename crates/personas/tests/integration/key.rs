//! The snake_case rule, as a table.

use personas::key::snake_case;

#[test]
fn snake_case_table() {
    let table = [
        ("Order Completed Last 30 Days", "order_completed_last_30_days"),
        ("order_completed_last_30days", "order_completed_last_30days"),
        ("High Value Customers", "high_value_customers"),
        ("  Padded   Name  ", "padded_name"),
        ("Runs -- of // separators!!", "runs_of_separators"),
        ("Punctuation: yes, really.", "punctuation_yes_really"),
        ("camelCaseName", "camel_case_name"),
        ("PascalCaseName", "pascal_case_name"),
        ("HTTPServer Errors", "http_server_errors"),
        ("last30Days", "last30_days"),
        ("30 Day Buyers", "30_day_buyers"),
        ("2024 Cohort", "2024_cohort"),
        ("Café Crème Fans", "café_crème_fans"),
        ("Ünïcödé Ñame", "ünïcödé_ñame"),
        ("already_snake_case", "already_snake_case"),
        ("kebab-case-name", "kebab_case_name"),
    ];
    for (name, key) in table {
        assert_eq!(snake_case(name), key, "name: {name:?}");
    }
}
