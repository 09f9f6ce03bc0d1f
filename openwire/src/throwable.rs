//! A Java exception as OpenWire carries it (in `ExceptionResponse`, `ConnectionError` and a
//! poison `MessageAck`): class name and message, and, only when the wire format has
//! `StackTraceEnabled`, the stack trace and the chain of causes.

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Writer};

/// One frame of a Java stack trace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StackTraceElement {
    pub class_name: Option<String>,
    pub method_name: Option<String>,
    pub file_name: Option<String>,
    pub line_number: i32,
}

/// A `java.lang.Throwable`. The client rebuilds an exception of `class_name` when it can (e.g.
/// `javax.jms.InvalidDestinationException`), else a plain `JMSException` with the message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Throwable {
    pub class_name: Option<String>,
    pub message: Option<String>,
    /// Written only with `StackTraceEnabled`.
    pub stack_trace: Vec<StackTraceElement>,
    /// Written only with `StackTraceEnabled`.
    pub cause: Option<Box<Throwable>>,
}

impl Throwable {
    pub fn new(class_name: impl Into<String>, message: impl Into<String>) -> Self {
        Throwable {
            class_name: Some(class_name.into()),
            message: Some(message.into()),
            ..Throwable::default()
        }
    }

    pub(crate) fn read(r: &mut Reader) -> Result<Option<Self>, DecodeError> {
        if !r.bool("Throwable")? {
            return Ok(None);
        }
        r.enter()?;
        let class_name = r.opt_string("Throwable.class")?;
        let message = r.opt_string("Throwable.message")?;
        let mut stack_trace = Vec::new();
        let mut cause = None;
        if r.stack_trace {
            let count = r.array_len("Throwable.stackTrace")?;
            for _ in 0..count {
                stack_trace.push(StackTraceElement {
                    class_name: r.opt_string("StackTraceElement.className")?,
                    method_name: r.opt_string("StackTraceElement.methodName")?,
                    file_name: r.opt_string("StackTraceElement.fileName")?,
                    line_number: r.i32("StackTraceElement.lineNumber")?,
                });
            }
            cause = Throwable::read(r)?.map(Box::new);
        }
        r.leave();
        Ok(Some(Throwable {
            class_name,
            message,
            stack_trace,
            cause,
        }))
    }

    pub(crate) fn write(w: &mut Writer<'_>, value: Option<&Self>) -> Result<(), EncodeError> {
        w.bool(value.is_some());
        let Some(value) = value else {
            return Ok(());
        };
        w.opt_string(value.class_name.as_deref(), "Throwable.class")?;
        w.opt_string(value.message.as_deref(), "Throwable.message")?;
        if w.stack_trace {
            w.array_len(value.stack_trace.len(), "Throwable.stackTrace")?;
            for e in &value.stack_trace {
                w.opt_string(e.class_name.as_deref(), "StackTraceElement.className")?;
                w.opt_string(e.method_name.as_deref(), "StackTraceElement.methodName")?;
                w.opt_string(e.file_name.as_deref(), "StackTraceElement.fileName")?;
                w.i32(e.line_number);
            }
            Throwable::write(w, value.cause.as_deref())?;
        }
        Ok(())
    }
}
