// Everything the benchmark creates outside its own process (namespaces, pins, an agent) is registered here and
// removed on every way out: normal end, fail(), SIGINT, SIGTERM.
import Dispatch
import Foundation

enum Cleanup {
    nonisolated(unsafe) private static var actions: [() -> Void] = []
    private static let lock = NSLock()
    nonisolated(unsafe) private static var signalSources: [DispatchSourceSignal] = []

    /// Registers `action`; actions run once, newest first.
    static func add(_ action: @escaping () -> Void) {
        lock.lock()
        defer { lock.unlock() }
        actions.append(action)
    }

    /// Runs and forgets every registered action. Serialized: a signal arriving during a cleanup waits for it.
    static func run() {
        lock.lock()
        defer { lock.unlock() }
        while let action = actions.popLast() { action() }
    }

    /// On SIGINT or SIGTERM: clean up, then exit 130.
    static func installSignalHandlers() {
        signalSources = [SIGINT, SIGTERM].map { signo in
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler {
                FileHandle.standardError.write(Data("\nicmpwall-bench: interrupted, cleaning up\n".utf8))
                run()
                exit(130)
            }
            source.resume()
            return source
        }
    }
}
