import ArgumentParser
import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallPolicy

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a policy file.",
        discussion: "Prints FILE:LINE:COLUMN: messages for every problem; exit 1 when the policy is invalid.")

    @Argument(help: "The policy file.") var policyFile: String?
    @Option(name: .long, help: "The policy file (instead of the positional argument).") var policy: String?
    @Flag(name: .long, help: "Print the compiled lookup tables' sizes.") var verbose = false

    func validate() throws {
        if policyFile == nil && policy == nil { throw ValidationError("give a policy file: icmpwall check POLICY") }
        if policyFile != nil && policy != nil { throw ValidationError("give the policy once, positionally or with --policy") }
    }

    func run() throws {
        let path = (policyFile ?? policy)!
        let compiled = try loadPolicy(path)
        let p = compiled.policy
        print("\(path): ok: policy \(p.name), \(p.rules.count) rules, default \(p.defaultAction == .drop ? "drop" : "pass"), mode \(p.mode == .monitor ? "monitor" : "enforce"), sha256 \(p.sha256Hex)")
        if verbose {
            print("compiled: \(compiled.decisions.count) decision entries, \(compiled.sourceClasses.count) source prefixes")
        }
    }
}

struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Load the datapath, attach it to an interface and pin its state.",
        discussion: """
        Enforcement continues after the command exits; state is pinned under /sys/fs/bpf/icmpwall/IF/. \
        Without --policy the embedded edge-default policy is used. Over existing pins: pins of an older datapath ABI \
        are upgraded in place without a gap; pins that outlived their link (the interface was deleted and created \
        again, or the link pin was removed) resume enforcement: same policy, counters and buckets (a --policy that \
        differs is applied after).
        """)

    @Option(name: .long, help: "The interface to protect.") var interface: String
    @Option(name: .long, help: "The policy file (default: the embedded edge-default).") var policy: String?
    @Option(name: .long, help: "XDP mode: auto (native, else generic), native or generic.") var mode: AttachModeRequest = .auto

    func validate() throws { try validateInterface(interface) }

    func run() throws {
        let compiled = try loadPolicy(policy, enforcing: true)
        try requirePrivileges(for: "attach", mount: !BPFFS.isMounted())
        let dataplane = Dataplane()
        let result = try dataplane.attach(interface: interface, policy: compiled, mode: mode, policyGiven: policy != nil)
        if let u = result.upgrade {
            print("upgraded \(result.interface) in place from datapath ABI \(u.fromABI) to \(u.toABI) without a gap (program \(u.oldProgramID) -> \(u.newProgramID) on the same link): policy \(compiled.policy.name), generation \(u.install.generation); carried over: \(u.carried.joined(separator: ", ")); started afresh: \(u.fresh.joined(separator: ", "))")
            return
        }
        if result.restoredLink {
            if result.install.resumed {
                let running = try dataplane.status(interface: interface).first
                print("re-attached to \(interface) in \(result.mode.rawValue) mode from its pins: policy \(running?.policyName ?? "?") (generation \(result.install.generation)) continues, counters kept")
            } else {
                print("re-attached to \(interface) in \(result.mode.rawValue) mode from its pins (counters and buckets continue), then applied \(compiled.policy.name): generation \(result.install.generation)")
            }
            return
        }
        print("attached to \(result.interface) in \(result.mode.rawValue) mode: policy \(compiled.policy.name) (\(compiled.policy.rules.count) rules, generation \(result.install.generation)), pins in \(result.pinDirectory)")
    }
}

extension AttachModeRequest: ExpressibleByArgument {}

struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Replace the running policy on an interface, atomically.",
        discussion: "A rejected policy leaves the running one untouched; counters survive by rule name.")

    @Option(name: .long, help: "The interface.") var interface: String
    @Argument(help: "The policy file.") var policyFile: String?
    @Option(name: .long, help: "The policy file (instead of the positional argument).") var policy: String?

    func validate() throws {
        try validateInterface(interface)
        if policyFile == nil && policy == nil { throw ValidationError("give a policy file: icmpwall apply --interface IF POLICY") }
        if policyFile != nil && policy != nil { throw ValidationError("give the policy once, positionally or with --policy") }
    }

    func run() throws {
        let compiled = try loadPolicy(policyFile ?? policy, enforcing: true)
        try requirePrivileges(for: "apply")
        let result = try Dataplane().apply(interface: interface, policy: compiled)
        print("applied \(compiled.policy.name) to \(interface): generation \(result.generation), \(compiled.policy.rules.count) rules, \(result.decisionEntries) table entries")
    }
}

struct Detach: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "detach", abstract: "Detach from an interface and remove its pins.")

    @Option(name: .long, help: "The interface.") var interface: String

    func validate() throws { try validateInterface(interface) }

    func run() throws {
        try requirePrivileges(for: "detach")
        try Dataplane().detach(interface: interface)
        print("detached from \(interface)")
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show what is attached where.")

    @Option(name: .long, help: "Only this interface.") var interface: String?
    @Flag(name: .long, help: "JSON output.") var json = false

    func run() throws {
        try requirePrivileges(for: "status")
        let statuses = try Dataplane().status(interface: interface)
        if json {
            print(jsonLine(["attachments": statuses]))
            return
        }
        if statuses.isEmpty {
            print("icmpwall is not attached to any interface")
            return
        }
        let formatter = ISO8601DateFormatter()
        for s in statuses {
            print("\(s.interface): \(s.enforcing ? "enforcing" : s.linkPinned ? "NOT ENFORCING (link lost)" : "NOT ENFORCING (link pin removed: the program was detached; `icmpwall attach --interface \(s.interface)` restores it with the pinned counters)") in \(s.mode) mode, program id \(s.programID.map(String.init) ?? "-"), link id \(s.linkID.map(String.init) ?? "-")")
            print("  policy \(s.policyName) sha256 \(s.policySHA256.prefix(16))…, \(s.ruleCount) rules, generation \(s.generation)")
            print("  egress error limiter: \(s.egressProgramID.map { "tc clsact egress filter, program id \($0)" } ?? "NOT ATTACHED")")
            if s.abiVersion != 0 && Int(s.abiVersion) != IcmpwallVersion.abi {
                print("  pins of datapath ABI \(s.abiVersion) (this icmpwall speaks \(IcmpwallVersion.abi)): `icmpwall attach --interface \(s.interface) --policy FILE` upgrades them in place")
            }
            print("  attached \(s.attachedAt.map { formatter.string(from: $0) } ?? "-"), applied \(s.appliedAt.map { formatter.string(from: $0) } ?? "-"), pins \(s.pinDirectory)")
        }
    }
}
