import CLibBPF
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A BPF ELF object opened with libbpf: configure it (read-only variables, map sizes, reused
/// pinned maps), ``load(verifierLogLevel:)`` it into the kernel, then look up its programs and maps.
///
/// ``BPFProgram`` and ``BPFMap`` values obtained from an object keep it alive, so their file
/// descriptors stay valid for as long as any of them exists; the object is closed
/// (`bpf_object__close`) when the last reference goes away.
///
/// Thread safety: libbpf's `bpf_object` is not thread-safe, so every access to the handle goes
/// through `lock`. After loading, programs and maps are used through their kernel file
/// descriptors, which are safe to use from any thread. That is why the class is
/// `@unchecked Sendable`.
public final class BPFObject: @unchecked Sendable {
    /// The object name given at open (libbpf prefixes internal maps with up to 8 of its characters).
    public let name: String

    private let handle: OpaquePointer
    private let elf: [UInt8]
    private let lock = Mutex(State())

    private struct State {
        var loaded = false
        /// libbpf refuses a second `bpf_object__load`, even after a failed one.
        var loadAttempted = false
        /// Verifier logs of programs, kept after load (non-empty only with a log level or on failure).
        var verifierLogs: [String: String] = [:]
        /// libbpf renames a map to the kernel's (≤15 character) name in `bpf_map__reuse_fd`;
        /// remember the name the object used.
        var reusedMapNames: [String: String] = [:]
    }

    /// The verifier log buffer given to each program: large enough for any program we ship.
    public static let verifierLogBufferSize = 16 << 20

    /// Opens an ELF object from memory (`bpf_object__open_mem`, which copies the bytes).
    ///
    /// - Parameters:
    ///   - bytes: the object file produced by `clang -target bpf`.
    ///   - name: the object name; the `.rodata` map is named `<name up to 8 chars>.rodata`.
    public init(bytes: [UInt8], name: String) throws(BPFError) {
        BPFLog.install()
        let mark = BPFLog.mark()
        var savedErrno: Int32 = 0
        let obj: OpaquePointer? = withOptions(bpf_object_open_opts.self) { opts in
            name.withCString { cname in
                opts.pointee.object_name = cname
                return bytes.withUnsafeBytes { raw in
                    let o = bpf_object__open_mem(raw.baseAddress, raw.count, opts)
                    savedErrno = currentErrno()
                    return o
                }
            }
        }
        guard let obj else {
            throw BPFError(
                operation: "bpf_object__open_mem", errno: savedErrno == 0 ? EINVAL : savedErrno,
                context: "object \(name), \(bytes.count) bytes", libbpfMessages: BPFLog.messages(since: mark))
        }
        self.handle = obj
        self.name = name
        self.elf = bytes
    }

    deinit {
        bpf_object__close(handle)
    }

    /// Whether ``load(verifierLogLevel:)`` has succeeded.
    public var isLoaded: Bool { lock.withLock { $0.loaded } }

    /// Names of the object's programs (function names), in section order.
    public var programNames: [String] {
        lock.withLock { _ in programHandles().map { String(cString: bpf_program__name($0)) } }
    }

    /// Names of the object's maps as libbpf knows them (internal maps: `<obj>.rodata`, …).
    public var mapNames: [String] {
        lock.withLock { _ in mapHandles().map { String(cString: bpf_map__name($0)) } }
    }

    // MARK: Before load

    /// Sets a `const volatile` global (which lives in `.rodata`) before load.
    ///
    /// The variable's offset and size come from the object's BTF (`DATASEC .rodata`); objects built
    /// without `-g` fall back to the ELF symbol table. `bytes.count` must equal the variable's size.
    public func setReadOnlyVariable(_ variable: String, to bytes: [UInt8]) throws(BPFError) {
        try lock.withLock { (state: inout State) throws(BPFError) in
            let ctx = "variable \(variable) in \(name).rodata"
            guard !state.loaded else {
                throw BPFError(operation: "bpf_map__set_initial_value", errno: EBUSY, context: "\(ctx): object already loaded")
            }
            guard let map = bpf_object__find_map_by_name(handle, ".rodata") else {
                throw BPFError(operation: "bpf_object__find_map_by_name", errno: ENOENT, context: "\(ctx): the object has no .rodata section")
            }
            guard let layout = variableLayout(variable, section: ".rodata") else {
                throw BPFError(operation: "btf__find_by_name_kind", errno: ENOENT, context: "\(ctx): no such variable (declare it `const volatile` and initialise it)")
            }
            guard bytes.count == layout.size else {
                throw BPFError(operation: "setReadOnlyVariable", errno: EINVAL, context: "\(ctx): variable is \(layout.size) bytes, got \(bytes.count)")
            }
            var size = 0
            guard let initial = bpf_map__initial_value(map, &size) else {
                throw BPFError(operation: "bpf_map__initial_value", errno: currentErrno() == 0 ? EINVAL : currentErrno(), context: ctx)
            }
            guard layout.offset + layout.size <= size else {
                throw BPFError(operation: "setReadOnlyVariable", errno: ERANGE, context: "\(ctx): offset \(layout.offset)+\(layout.size) beyond .rodata size \(size)")
            }
            var data = [UInt8](UnsafeRawBufferPointer(start: initial, count: size))
            data.replaceSubrange(layout.offset..<(layout.offset + layout.size), with: bytes)
            let r = data.withUnsafeBytes { bpf_map__set_initial_value(map, $0.baseAddress, $0.count) }
            try check(r, "bpf_map__set_initial_value", ctx)
        }
    }

    /// Sets a `const volatile` global of a trivial type (`UInt8`, `UInt32`, a tuple for arrays, …).
    public func setReadOnlyVariable<T: BitwiseCopyable>(_ variable: String, to value: T) throws(BPFError) {
        let bytes = withUnsafeBytes(of: value) { Array($0) }
        try setReadOnlyVariable(variable, to: bytes)
    }

    /// The current bytes of a `.rodata` variable as it will be loaded (the compiled-in initialiser
    /// unless changed with `setReadOnlyVariable`).
    public func readOnlyVariable(_ variable: String) throws(BPFError) -> [UInt8] {
        try lock.withLock { (_: inout State) throws(BPFError) -> [UInt8] in
            let ctx = "variable \(variable) in \(name).rodata"
            guard let map = bpf_object__find_map_by_name(handle, ".rodata"),
                  let layout = variableLayout(variable, section: ".rodata") else {
                throw BPFError(operation: "btf__find_by_name_kind", errno: ENOENT, context: ctx)
            }
            var size = 0
            guard let initial = bpf_map__initial_value(map, &size), layout.offset + layout.size <= size else {
                throw BPFError(operation: "bpf_map__initial_value", errno: EINVAL, context: ctx)
            }
            return [UInt8](UnsafeRawBufferPointer(start: initial + layout.offset, count: layout.size))
        }
    }

    /// Adds verifier load flags (`BPF_PROG_LOAD`'s `prog_flags`) to every program before load, keeping the flags
    /// libbpf already set. See ``BPFLoadFlags``.
    public func addLoadFlags(_ flags: BPFLoadFlags) throws(BPFError) {
        try lock.withLock { (state: inout State) throws(BPFError) in
            guard !state.loaded else {
                throw BPFError(operation: "bpf_program__set_flags", errno: EBUSY, context: "object \(name) is already loaded")
            }
            for prog in programHandles() {
                try check(bpf_program__set_flags(prog, bpf_program__flags(prog) | flags.rawValue), "bpf_program__set_flags",
                          "program \(String(cString: bpf_program__name(prog))) flags 0x\(String(flags.rawValue, radix: 16))")
            }
        }
    }

    /// Changes a map's `max_entries` before load.
    public func setMaxEntries(map mapName: String, _ n: UInt32) throws(BPFError) {
        try lock.withLock { (state: inout State) throws(BPFError) in
            let map = try findMap(mapName, state: state)
            try check(bpf_map__set_max_entries(map, n), "bpf_map__set_max_entries", "map \(mapName) max_entries \(n)")
        }
    }

    /// Makes the object use an existing pinned map instead of creating its own
    /// (`bpf_map__reuse_fd`), so a newly loaded program shares state with the running one.
    ///
    /// The pinned map must match the object's definition exactly (type, key size, value size,
    /// max_entries, flags); otherwise this throws `EINVAL` naming the difference, rather than
    /// letting libbpf silently adopt the pinned map's shape.
    public func reuseMap(named mapName: String, pinnedAt path: String) throws(BPFError) {
        try lock.withLock { (state: inout State) throws(BPFError) in
            guard !state.loaded else {
                throw BPFError(operation: "bpf_map__reuse_fd", errno: EBUSY, context: "map \(mapName): object already loaded")
            }
            let map = try findMap(mapName, state: state)
            let fd = try check(path.withCString { bpf_obj_get($0) }, "bpf_obj_get", "pin \(path)")
            defer { close(fd) }
            let info = try BPFMap.mapInfo(fd: fd, context: "pin \(path)")
            var diffs: [String] = []
            if info.type != bpf_map__type(map).rawValue {
                diffs.append("type \(BPFMapType(rawValue: info.type)) vs \(BPFMapType(rawValue: bpf_map__type(map).rawValue))")
            }
            if info.key_size != bpf_map__key_size(map) { diffs.append("key size \(info.key_size) vs \(bpf_map__key_size(map))") }
            if info.value_size != bpf_map__value_size(map) { diffs.append("value size \(info.value_size) vs \(bpf_map__value_size(map))") }
            if info.max_entries != bpf_map__max_entries(map) { diffs.append("max_entries \(info.max_entries) vs \(bpf_map__max_entries(map))") }
            if info.map_flags != bpf_map__map_flags(map) { diffs.append("flags 0x\(String(info.map_flags, radix: 16)) vs 0x\(String(bpf_map__map_flags(map), radix: 16))") }
            guard diffs.isEmpty else {
                throw BPFError(
                    operation: "bpf_map__reuse_fd", errno: EINVAL,
                    context: "map \(mapName): pinned map at \(path) differs (pinned vs object): \(diffs.joined(separator: ", "))")
            }
            let mark = BPFLog.mark()
            try check(bpf_map__reuse_fd(map, fd), "bpf_map__reuse_fd", "map \(mapName) from \(path)", messagesSince: mark)
            // libbpf renames the map to the kernel's name: keep resolving the original one.
            state.reusedMapNames[mapName] = String(cString: bpf_map__name(map))
        }
    }

    // MARK: Load

    /// Loads every map and program into the kernel (`bpf_object__load`).
    ///
    /// Each program gets a 16 MiB verifier log buffer before load. With level 0 the kernel is
    /// asked for no log, and libbpf 1.x reloads a failing program with log level 1 into that buffer,
    /// so a rejected program's log always reaches ``BPFError/verifierLog``. With a level above 0
    /// (1 = per-instruction, 2 = verbose, 4 = statistics; they combine) logs are kept for every
    /// program and available from ``verifierLog(program:)``.
    public func load(verifierLogLevel: UInt32 = 0) throws(BPFError) {
        try lock.withLock { (state: inout State) throws(BPFError) in
            guard !state.loaded else {
                throw BPFError(operation: "bpf_object__load", errno: EALREADY, context: "object \(name) is already loaded")
            }
            guard !state.loadAttempted else {
                throw BPFError(operation: "bpf_object__load", errno: EINVAL,
                               context: "object \(name): a failed load cannot be retried; open a new BPFObject")
            }
            state.loadAttempted = true
            let size = BPFObject.verifierLogBufferSize
            var buffers: [(name: String, buffer: UnsafeMutablePointer<CChar>)] = []
            defer { for b in buffers { b.buffer.deallocate() } }
            for prog in programHandles() {
                let buf = UnsafeMutablePointer<CChar>.allocate(capacity: size)
                buf[0] = 0
                buffers.append((String(cString: bpf_program__name(prog)), buf))
                try check(bpf_program__set_log_buf(prog, buf, size), "bpf_program__set_log_buf", "program \(buffers.last!.name)")
                if verifierLogLevel > 0 {
                    try check(bpf_program__set_log_level(prog, verifierLogLevel), "bpf_program__set_log_level", "program \(buffers.last!.name)")
                }
            }
            let mark = BPFLog.mark()
            let r = bpf_object__load(handle)
            var logs: [String: String] = [:]
            for b in buffers where b.buffer[0] != 0 {
                b.buffer[size - 1] = 0
                logs[b.name] = String(cString: b.buffer)
            }
            // The buffers are freed on return: make sure libbpf no longer points at them.
            for prog in programHandles() { _ = bpf_program__set_log_buf(prog, nil, 0) }
            state.verifierLogs = logs
            guard r >= 0 else {
                let messages = BPFLog.messages(since: mark)
                let failing = BPFObject.failingProgram(messages: messages, logs: logs, order: buffers.map(\.name))
                let context: String
                if let failing {
                    context = "program \(failing)"
                } else if let mapMessage = messages.first(where: { $0.hasPrefix("map '") }),
                          let mapName = mapMessage.split(separator: "'").dropFirst().first {
                    context = "map \(mapName)"
                } else {
                    context = "object \(name)"
                }
                throw BPFError(
                    operation: "bpf_object__load", errno: -r, context: context,
                    verifierLog: failing.flatMap { logs[$0] }, libbpfMessages: messages)
            }
            state.loaded = true
        }
    }

    /// The verifier log a program produced during ``load(verifierLogLevel:)``, if any.
    public func verifierLog(program: String) -> String? {
        lock.withLock { $0.verifierLogs[program] }
    }

    /// Which program failed: the one libbpf names in its "failed to load" warning, else the last
    /// program (in load order) that has a log.
    static func failingProgram(messages: [String], logs: [String: String], order: [String]) -> String? {
        for m in messages where m.hasPrefix("prog '") && (m.contains("failed to load") || m.contains("load failed")) {
            let parts = m.split(separator: "'", maxSplits: 2)
            if parts.count >= 2 { return String(parts[1]) }
        }
        return order.last { logs[$0] != nil }
    }

    // MARK: After load

    /// A loaded program by its function name.
    public func program(named programName: String) throws(BPFError) -> BPFProgram {
        try lock.withLock { (state: inout State) throws(BPFError) -> BPFProgram in
            guard let prog = bpf_object__find_program_by_name(handle, programName) else {
                let known = programHandles().map { String(cString: bpf_program__name($0)) }
                throw BPFError(operation: "bpf_object__find_program_by_name", errno: ENOENT,
                               context: "program \(programName) (object has: \(known.joined(separator: ", ")))")
            }
            guard state.loaded else {
                throw BPFError(operation: "bpf_program__fd", errno: EINVAL, context: "program \(programName): load() the object first")
            }
            let fd = try check(bpf_program__fd(prog), "bpf_program__fd", "program \(programName)")
            return BPFProgram(name: programName, fd: fd, type: BPFProgramType(rawValue: bpf_program__type(prog).rawValue), owner: self)
        }
    }

    /// A loaded map by name (its C name; internal maps as `<obj>.rodata` or `.rodata`).
    public func map(named mapName: String) throws(BPFError) -> BPFMap {
        try lock.withLock { (state: inout State) throws(BPFError) -> BPFMap in
            let map = try findMap(mapName, state: state)
            guard state.loaded else {
                throw BPFError(operation: "bpf_map__fd", errno: EINVAL, context: "map \(mapName): load() the object first")
            }
            let fd = try check(bpf_map__fd(map), "bpf_map__fd", "map \(mapName)")
            return BPFMap(
                name: mapName, fd: fd, type: BPFMapType(rawValue: bpf_map__type(map).rawValue),
                keySize: bpf_map__key_size(map), valueSize: bpf_map__value_size(map),
                maxEntries: bpf_map__max_entries(map), flags: bpf_map__map_flags(map), owner: self)
        }
    }

    // MARK: Internals (call with the lock held)

    private func programHandles() -> [OpaquePointer] {
        var out: [OpaquePointer] = []
        var p = bpf_object__next_program(handle, nil)
        while let prog = p {
            out.append(prog)
            p = bpf_object__next_program(handle, prog)
        }
        return out
    }

    private func mapHandles() -> [OpaquePointer] {
        var out: [OpaquePointer] = []
        var m = bpf_object__next_map(handle, nil)
        while let map = m {
            out.append(map)
            m = bpf_object__next_map(handle, map)
        }
        return out
    }

    private func findMap(_ mapName: String, state: State) throws(BPFError) -> OpaquePointer {
        let lookupName = state.reusedMapNames[mapName] ?? mapName
        if let m = bpf_object__find_map_by_name(handle, lookupName) { return m }
        let known = mapHandles().map { String(cString: bpf_map__name($0)) }
        throw BPFError(operation: "bpf_object__find_map_by_name", errno: ENOENT,
                       context: "map \(mapName) (object has: \(known.joined(separator: ", ")))")
    }

    /// Offset and size of a global variable inside a data section: BTF first, ELF symbols as fallback.
    func variableLayout(_ variable: String, section: String) -> (offset: Int, size: Int)? {
        if let btf = bpf_object__btf(handle), let l = BTFAccess.variable(variable, inDatasec: section, btf: btf) {
            return l
        }
        return ELFSymbols.variable(variable, inSection: section, elf: elf)
    }

    /// Test hook: the layout each source reports.
    func variableLayouts(_ variable: String, section: String) -> (btf: (offset: Int, size: Int)?, elf: (offset: Int, size: Int)?) {
        lock.withLock { _ in
            let b = bpf_object__btf(handle).flatMap { BTFAccess.variable(variable, inDatasec: section, btf: $0) }
            return (b, ELFSymbols.variable(variable, inSection: section, elf: elf))
        }
    }
}
