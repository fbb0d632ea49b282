//! `tsusen ship`: the rows of a directory of day files into ClickHouse.

use anyhow::Result;
use clap::Args;

use crate::{clickhouse::ClickHouseArgs, exit::ResultExt as _};

#[derive(Args, Debug, Clone)]
pub struct ShipArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// Print the CREATE statements of the table (for a DBA) and exit.
    #[arg(long)]
    pub print_schema: bool,
}

pub fn run(args: &ShipArgs) -> Result<()> {
    let table = args.clickhouse.table().config_error()?;
    if args.print_schema {
        print!("{}", table.print());
        return Ok(());
    }
    crate::config_bail!("nothing to do: give --print-schema")
}
