//! Connection tracking: turns socket events into HTTP/1.1 exchanges, connections and DNS lookups.
