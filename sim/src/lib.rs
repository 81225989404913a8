//! Feishu simulator.
