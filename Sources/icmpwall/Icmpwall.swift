import ArgumentParser
import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallPolicy

/// `icmpwall`: an XDP firewall and rate limiter for ICMP and ICMPv6.
struct Icmpwall: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "icmpwall",
        abstract: "An XDP firewall and rate limiter for ICMP and ICMPv6.",
        discussion: """
        Exit codes: 0 ok, 1 invalid input (policy, capture, arguments that name something wrong), \
        2 usage, 3 system or kernel failure.
        """,
        subcommands: [Check.self, Attach.self, Apply.self, Detach.self, Status.self, Stats.self, Replay.self,
                      Lab.self, Version.self, AgentCommand.self]
    )
}

/// Exit codes, as documented in the README.
enum Exit {
    static let ok: Int32 = 0
    static let invalidInput: Int32 = 1
    static let usage: Int32 = 2
    static let system: Int32 = 3
}

@main
enum Main {
    static func main() {
        do {
            var command = try Icmpwall.parseAsRoot()
            try command.run()
        } catch let error as DataplaneError {
            fail(error.description, code: error.exitCode)
        } catch let error as PolicyError {
            fail(error.description, code: Exit.invalidInput, prefixed: false)
        } catch let error as CLIError {
            fail(error.message, code: error.code)
        } catch {
            let code = Icmpwall.exitCode(for: error)
            if code == .success {
                print(Icmpwall.fullMessage(for: error))
                exit(0)
            }
            if let exit = error as? ExitCode {
                Foundation.exit(exit.rawValue)
            }
            let message = Icmpwall.fullMessage(for: error)
            FileHandle.standardError.write(Data((message + "\n").utf8))
            exit(code == .validationFailure ? Exit.usage : code.rawValue)
        }
    }

    static func fail(_ message: String, code: Int32, prefixed: Bool = true) -> Never {
        let text = prefixed ? "icmpwall: error: \(message)\n" : message.hasSuffix("\n") ? message : message + "\n"
        FileHandle.standardError.write(Data(text.utf8))
        exit(code)
    }
}

/// An error with a chosen exit code.
struct CLIError: Error {
    var message: String
    var code: Int32
    static func invalid(_ message: String) -> CLIError { CLIError(message: message, code: Exit.invalidInput) }
    static func system(_ message: String) -> CLIError { CLIError(message: message, code: Exit.system) }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
}

/// Loads and compiles a policy (the embedded edge-default when `path` is nil); prints warnings to stderr.
/// `enforcing`: the policy is about to be enforced (attach, apply), so a file others could have written is refused.
func loadPolicy(_ path: String?, quiet: Bool = false, enforcing: Bool = false) throws -> CompiledPolicy {
    let (policy, warnings): (Policy, [PolicyDiagnostic])
    if let path, enforcing {
        try FileTrust.requireTrusted(path)
    }
    if let path {
        (policy, warnings) = try PolicyLoader.load(contentsOf: path)
    } else {
        (policy, warnings) = try PolicyLoader.parse(PolicyLoader.embeddedDefault, fileName: "edge-default.yaml")
    }
    if !quiet {
        // One write for all of them: a policy with hundreds of shadowed rules should not cost a syscall each.
        if !warnings.isEmpty { printError(warnings.map(\.description).joined(separator: "\n")) }
    }
    return try PolicyCompiler.compile(policy, capacity: DatapathCapacity.compile)
}

func jsonLine<T: Encodable>(_ value: T, pretty: Bool = false) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    guard let data = try? encoder.encode(value) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}

/// Refuses early, naming the missing capabilities, when the process cannot do what `command` needs
/// (rather than failing later with a bare EPERM from the kernel). Exit code 3.
func requirePrivileges(for command: String, mount: Bool = false) throws {
    var needed: [Capability] = [.bpf, .netAdmin, .perfmon]
    if mount { needed.append(.sysAdmin) }
    let missing = Capabilities.missing(needed)
    // CAP_SYS_ADMIN also grants what CAP_BPF and CAP_PERFMON grant (the kernel checks it as a fallback).
    if missing.isEmpty || Capabilities.missing([.sysAdmin]).isEmpty && !missing.contains("CAP_NET_ADMIN") { return }
    throw CLIError.system("\(command) needs \(needed.map(\.description).joined(separator: ", ")); this process lacks \(missing.joined(separator: ", ")) (run it as root, or grant the capabilities, e.g. with systemd's AmbientCapabilities=)")
}

/// Shared `--interface` validation.
func validateInterface(_ name: String) throws {
    guard !name.isEmpty, name.utf8.count < 16, !name.contains("/"), !name.contains(" ") else {
        throw ValidationError("'\(name)' is not a valid interface name (1-15 characters, no '/' or spaces)")
    }
}
