import Foundation
import Testing
@testable import IcmpwallPolicy

@Suite("Files that may be enforced")
struct FileTrustTests {
    @Test func writableByOthersOrForeignOwnerIsRefused() throws {
        let path = NSTemporaryDirectory() + "icmpwall-trust-\(getpid()).yaml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "version: 1\n".write(toFile: path, atomically: false, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        #expect(FileTrust.problem(with: path) == nil)
        try FileManager.default.setAttributes([.posixPermissions: 0o664], ofItemAtPath: path)
        #expect(FileTrust.problem(with: path)?.hasPrefix("it is writable by its group (mode 664)") == true)
        try FileManager.default.setAttributes([.posixPermissions: 0o646], ofItemAtPath: path)
        #expect(FileTrust.problem(with: path)?.hasPrefix("it is writable by others") == true)
        do {
            try FileTrust.requireTrusted(path)
            Issue.record("a file writable by others was accepted")
        } catch {
            #expect(error.description.hasPrefix("\(path):1:1: error: refusing to enforce this file"))
        }
        // Another (non-root) owner: only root can hand a file away, so this part needs root.
        if geteuid() == 0 {
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
            #expect(chown(path, 65534, 65534) == 0)
            #expect(FileTrust.problem(with: path)?.contains("owned by uid 65534") == true)
        }
    }
}
