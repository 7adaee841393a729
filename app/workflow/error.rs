//! Errors of the workflow engine. Each message is one line that says what is wrong and where, so
//! the CLI and the window can show it as it is (the caller prefixes the file name).

use thiserror::Error;

/// Why a workflow could not be read, converted or edited.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum WorkflowError {
    /// The bytes are not JSON (or JSON cut short); line and column are 1-based.
    #[error("not valid JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    /// Valid JSON, but neither a UI workflow nor an API prompt.
    #[error("not a ComfyUI workflow: {0}")]
    NotAWorkflow(String),
    /// A UI workflow whose structure is broken at `place` (a JSON path such as `nodes[3].inputs`).
    #[error("broken UI workflow at {place}: {message}")]
    BadUi { place: String, message: String },
    /// An API prompt whose structure is broken at `place`.
    #[error("broken API prompt at {place}: {message}")]
    BadApi { place: String, message: String },
    /// Metadata inside an image or video could not be read.
    #[error("{0}")]
    Embedded(String),
    /// A node type no known node definition describes, so its widget values have no names.
    #[error(
        "node {node} is of type '{class_type}', which neither the connected server nor the bundled node definitions describe; {hint}"
    )]
    UnknownNodeType {
        node: String,
        class_type: String,
        hint: String,
    },
    /// An input names a link id the links list does not have.
    #[error("{place} uses link {link}, which the workflow's links list does not have")]
    MissingLink { link: i64, place: String },
    /// Following links went round in a circle.
    #[error("links form a cycle through node {node}")]
    Cycle { node: String },
    /// A link points at a node or slot that does not exist.
    #[error("link {link} at {place} points at {target}, which does not exist")]
    DanglingLink {
        link: String,
        place: String,
        target: String,
    },
    /// Nesting (JSON or subgraphs) deeper than any real workflow.
    #[error("{what} nested deeper than {limit} levels; refusing to read further")]
    TooDeep { what: String, limit: usize },
    /// An edit that cannot be applied to this graph.
    #[error("cannot edit: {0}")]
    Edit(String),
}

impl WorkflowError {
    pub(crate) fn bad_ui(place: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadUi {
            place: place.into(),
            message: message.into(),
        }
    }

    pub(crate) fn bad_api(place: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadApi {
            place: place.into(),
            message: message.into(),
        }
    }

    pub fn from_json(error: &serde_json::Error) -> Self {
        let message = error.to_string();
        // serde_json appends " at line L column C"; we report them as fields instead.
        let message = match message.rfind(" at line ") {
            Some(cut) => message[..cut].to_string(),
            None => message,
        };
        Self::Json {
            line: error.line(),
            column: error.column(),
            message,
        }
    }
}
