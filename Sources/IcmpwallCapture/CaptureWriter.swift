import IcmpwallFrames

/// Writes a pcap file with libpcap (`pcap_dump`): for tests, fuzz reproducers and exported traces.
///
/// ```swift
/// let writer = try CaptureWriter(path: "out.pcap")
/// try writer.write(bytes: frame.bytes, timestampNanoseconds: 1_700_000_000_000_000_000)
/// try writer.close()
/// ```
/// Not thread-safe: use one writer from one task.
public final class CaptureWriter {
    /// The path as given.
    public let path: String
    /// The link type written in the file header; records must carry that link layer.
    public let linkType: CaptureLinkType
    /// True for a nanosecond-resolution file (magic 0xa1b23c4d), false for microseconds.
    public let nanosecond: Bool
    /// The snapshot length in the file header; longer records are cut to it.
    public let snapshotLength: Int
    /// How many records were written.
    public private(set) var framesWritten = 0

    private var dump: Pcap.Dump?

    /// Creates (or replaces) `path` as a pcap file.
    /// - Throws: ``CaptureError`` `.open` with libpcap's message when the file cannot be created.
    public init(path: String, linkType: CaptureLinkType = .ethernet, nanosecond: Bool = true,
                snapshotLength: Int = 262_144) throws(CaptureError) {
        precondition(snapshotLength > 0, "the snapshot length must be positive")
        self.path = path
        self.linkType = linkType
        self.nanosecond = nanosecond
        self.snapshotLength = snapshotLength
        switch Pcap.openDump(path: path, dataLinkType: linkType.dataLinkType, snapshotLength: snapshotLength,
                             nanosecond: nanosecond) {
        case .success(let dump): self.dump = dump
        case .failure(let error): throw CaptureError(kind: .open, path: path, message: error.text)
        }
    }

    deinit {
        if let dump { Pcap.close(dump) }
    }

    /// Appends one record. Bytes beyond ``snapshotLength`` are cut; `originalLength` (default: the
    /// full byte count) is the length on the wire and may exceed what is stored.
    /// - Throws: ``CaptureError`` `.write` when the stream reports an error, `.closed` after ``close()``.
    public func write(bytes: [UInt8], timestampNanoseconds: UInt64, originalLength: Int? = nil) throws(CaptureError) {
        guard let dump else {
            throw CaptureError(kind: .closed, path: path, message: "the capture writer was closed")
        }
        let stored = min(bytes.count, snapshotLength)
        let fraction = timestampNanoseconds % 1_000_000_000
        let written = Pcap.dump(dump, seconds: timestampNanoseconds / 1_000_000_000,
                                fraction: nanosecond ? fraction : fraction / 1000,
                                originalLength: max(originalLength ?? bytes.count, stored),
                                bytes: stored == bytes.count ? bytes : Array(bytes.prefix(stored)))
        guard written else {
            throw CaptureError(kind: .write, path: path, frameNumber: framesWritten + 1, message: "write error")
        }
        framesWritten += 1
    }

    /// Appends a built Ethernet frame.
    /// - Precondition: the writer's link type is `.ethernet`.
    public func write(_ frame: FrameBuilder, timestampNanoseconds: UInt64) throws(CaptureError) {
        precondition(linkType == .ethernet, "an Ethernet frame written to a \(linkType) capture")
        try write(bytes: frame.bytes, timestampNanoseconds: timestampNanoseconds)
    }

    /// Appends a frame read from another capture (already converted to Ethernet), keeping its
    /// timestamp and original length.
    /// - Precondition: the writer's link type is `.ethernet`.
    public func write(_ frame: CapturedFrame) throws(CaptureError) {
        precondition(linkType == .ethernet, "an Ethernet frame written to a \(linkType) capture")
        try write(bytes: frame.bytes, timestampNanoseconds: frame.timestampNanoseconds,
                  originalLength: frame.originalLength)
    }

    /// Pushes buffered records to the file.
    public func flush() throws(CaptureError) {
        guard let dump else {
            throw CaptureError(kind: .closed, path: path, message: "the capture writer was closed")
        }
        if let error = Pcap.flush(dump) {
            throw CaptureError(kind: .write, path: path, message: "flush failed: \(error)")
        }
    }

    /// Flushes and closes the file. Closing twice is harmless.
    /// - Throws: ``CaptureError`` `.write` when buffered data could not be written (the file is closed anyway).
    public func close() throws(CaptureError) {
        guard let dump else { return }
        let flushError = Pcap.flush(dump)
        Pcap.close(dump)
        self.dump = nil
        if let flushError {
            throw CaptureError(kind: .write, path: path, message: "flush failed: \(flushError)")
        }
    }
}
