//! Backtests: policies and native baselines replayed on a recorded trace in virtual time.
//!
//! Start with [`run::Backtest`]; the model is [`replay`], the native baselines
//! [`baselines`], the report's table and chart [`report`]. `scalehost simulate` is
//! `cmd::simulate`.

pub mod baselines;
pub(crate) mod replay;
pub(crate) mod report;
pub mod run;
