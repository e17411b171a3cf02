//! Backtests: policies and native baselines replayed on a recorded trace in virtual time.
//!
//! Start with [`backtest::Backtest`]; the model is [`model`], the native baselines
//! [`baselines`], the report's table and chart [`report`].

pub mod backtest;
pub mod baselines;
pub mod model;
pub mod report;
pub mod simulate;
