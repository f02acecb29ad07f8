//! What the user sees and types: rendering events (a run of lines in one pass), the line editor,
//! wall-clock formats.

pub mod clock;
pub mod lineedit;
pub mod prefixed;
pub mod render;
