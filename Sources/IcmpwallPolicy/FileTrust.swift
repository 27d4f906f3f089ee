#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Whether a file may decide what the firewall enforces. Commands that enforce (attach, apply, the agent) refuse
/// policy and config files that someone other than root or the running user could have written: whoever can
/// write the file could otherwise change the firewall. `check` and `replay` read any file.
public enum FileTrust {
    /// Why `path` must not be enforced, or nil when it may be (or cannot be inspected: the read reports that).
    /// Symbolic links are followed: what counts is the file the link points to (a Kubernetes ConfigMap's files
    /// are links into a root-owned directory).
    public static func problem(with path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        let euid = geteuid()
        if st.st_uid != 0 && st.st_uid != euid {
            return "it is owned by uid \(st.st_uid), which is neither root nor the user running icmpwall (uid \(euid)): chown it"
        }
        let group = st.st_mode & S_IWGRP != 0, others = st.st_mode & S_IWOTH != 0
        if group || others {
            let who = group && others ? "its group and by others" : group ? "its group" : "others"
            let mode = String(st.st_mode & 0o7777, radix: 8)
            return "it is writable by \(who) (mode \(mode)), so they could change what the firewall enforces: chmod go-w \(path)"
        }
        return nil
    }

    /// Throws a located error when `path` must not be enforced.
    public static func requireTrusted(_ path: String) throws(PolicyError) {
        if let reason = problem(with: path) {
            throw PolicyError(diagnostics: [PolicyDiagnostic(
                severity: .error, location: SourceLocation(file: path, line: 1, column: 1),
                message: "refusing to enforce this file: \(reason) (check and replay read any file)")])
        }
    }
}
