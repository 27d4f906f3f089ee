import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Watches the folders of the policy files with inotify and reports "something changed there".
///
/// It watches folders, not files: editors replace files by renaming, and Kubernetes updates a ConfigMap volume by
/// swapping the `..data` symlink in the folder, so the file's own inode never changes. For a policy path that is a
/// symlink into another folder, that folder is watched too. The agent also re-reads the files every 2 s, so a
/// change inotify cannot see (a folder created later, a remote file system) is still picked up.
public final class PolicyWatcher: @unchecked Sendable {
    public let events: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation
    private let fd: Int32
    private let lock = NSLock()
    private var running = true
    private var thread: Thread?

    public init(paths: [String], logger: Logger) {
        (events, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else {
            logger.warning("inotify unavailable; policy files are re-read every 2 s", metadata: ["error": "\(String(cString: strerror(errno)))"])
            return
        }
        var folders: [String] = []
        for path in paths {
            folders.append((path as NSString).deletingLastPathComponent)
            let resolved = (path as NSString).resolvingSymlinksInPath
            folders.append((resolved as NSString).deletingLastPathComponent)
        }
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)
        for folder in Set(folders.map { $0.isEmpty ? "." : $0 }).sorted() {
            if inotify_add_watch(fd, folder, mask) < 0 {
                logger.warning("cannot watch a policy folder; it is re-read every 2 s", metadata: [
                    "folder": "\(folder)", "error": "\(String(cString: strerror(errno)))"])
            } else {
                logger.debug("watching policy folder", metadata: ["folder": "\(folder)"])
            }
        }
        let t = Thread { [self] in loop() }
        t.name = "icmpwall-inotify"
        thread = t
        t.start()
    }

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 16384)
        while lock.withLock({ running }) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, 250)
            if r > 0 {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 { continuation.yield() }
            }
        }
        close(fd)
        continuation.finish()
    }

    public func stop() {
        lock.withLock { running = false }
        if fd < 0 { continuation.finish() }
    }
}
