//! tbctl: drives load against inference endpoints and measures every request.
