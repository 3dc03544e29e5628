//! Recognising HTTP/1.1 request and status lines in the payload prefix the probes copy.
