//! Store: the daily CSV files, `<out-dir>/YYYY-MM-DD.csv` (UTC).

pub mod row;
