//! What the user sees and types: rendering events, the line editor, wall-clock formats.

pub mod clock;
pub mod lineedit;
pub mod render;
