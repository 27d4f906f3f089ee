import BPFKit
import IcmpwallPolicy

/// A failure the CLI reports with a message and an exit code (documented in README: 1 invalid input,
/// 3 system or kernel failure).
public enum DataplaneError: Error, CustomStringConvertible, Sendable {
    /// The user's input is wrong: a policy, a capture, an interface name, a state conflict they can fix.
    case invalidInput(String)
    /// The kernel or the system refused.
    case system(String)
    case bpf(BPFError)
    case policy(PolicyError)

    public var description: String {
        switch self {
        case let .invalidInput(message), let .system(message): return message
        case let .bpf(error): return error.description
        case let .policy(error): return error.description
        }
    }

    /// The process exit code for this failure.
    public var exitCode: Int32 {
        switch self {
        case .invalidInput, .policy: return 1
        case .system, .bpf: return 3
        }
    }
}
