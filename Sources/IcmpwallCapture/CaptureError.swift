// Errors of capture reading and writing. They carry the path and, when known, the 1-based frame
// number, because "truncated dump file" alone does not tell a user which file or where.

/// A capture file could not be opened, read or written.
///
/// `description` reads like `capture.pcap: frame 3: truncated dump file; tried to read 100 captured bytes,
/// only got 42`; the message is libpcap's own text where libpcap reported the problem.
public struct CaptureError: Error, CustomStringConvertible, Sendable, Hashable {
    /// What failed.
    public enum Kind: Sendable, Hashable {
        /// The file could not be opened or is not a pcap/pcapng file.
        case open
        /// The file's link type is not one this reader can turn into Ethernet frames.
        case unsupportedLinkType
        /// libpcap failed while reading a record (truncated or corrupt file).
        case read
        /// A record was read but cannot be converted (e.g. shorter than its Linux cooked header).
        /// Reading may continue with the next record.
        case malformedFrame
        /// Writing or flushing failed.
        case write
        /// The reader or writer was already closed.
        case closed
    }

    /// What failed.
    public var kind: Kind
    /// The capture file's path as given by the caller.
    public var path: String
    /// The 1-based number of the record the error is about, when it is about one.
    public var frameNumber: Int?
    /// What went wrong (libpcap's message when libpcap reported it).
    public var message: String

    /// An error about `path`; a leading "`path`: " in `message` (as libpcap writes it) is dropped.
    public init(kind: Kind, path: String, frameNumber: Int? = nil, message: String) {
        self.kind = kind
        self.path = path
        self.frameNumber = frameNumber
        // libpcap's open errors often start with the path already ("x.pcap: No such file or directory");
        // drop it so the description does not name the file twice.
        let prefix = path + ": "
        self.message = message.hasPrefix(prefix) ? String(message.dropFirst(prefix.count)) : message
    }

    /// `path: message`, or `path: frame N: message`.
    public var description: String {
        if let frameNumber {
            return "\(path): frame \(frameNumber): \(message)"
        }
        return "\(path): \(message)"
    }
}
