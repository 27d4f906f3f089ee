import CLibBPF

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A kernel map type (`enum bpf_map_type`), printed with libbpf's name (`percpu_array`).
public struct BPFMapType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let hash = BPFMapType(rawValue: BPF_MAP_TYPE_HASH.rawValue)
    public static let array = BPFMapType(rawValue: BPF_MAP_TYPE_ARRAY.rawValue)
    public static let percpuHash = BPFMapType(rawValue: BPF_MAP_TYPE_PERCPU_HASH.rawValue)
    public static let percpuArray = BPFMapType(rawValue: BPF_MAP_TYPE_PERCPU_ARRAY.rawValue)
    public static let lruHash = BPFMapType(rawValue: BPF_MAP_TYPE_LRU_HASH.rawValue)
    public static let lruPercpuHash = BPFMapType(rawValue: BPF_MAP_TYPE_LRU_PERCPU_HASH.rawValue)
    public static let lpmTrie = BPFMapType(rawValue: BPF_MAP_TYPE_LPM_TRIE.rawValue)

    /// Whether values hold one slot per possible CPU.
    public var isPerCPU: Bool {
        [BPF_MAP_TYPE_PERCPU_HASH.rawValue, BPF_MAP_TYPE_PERCPU_ARRAY.rawValue,
         BPF_MAP_TYPE_LRU_PERCPU_HASH.rawValue, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE.rawValue].contains(rawValue)
    }

    public var description: String {
        libbpf_bpf_map_type_str(bpf_map_type(rawValue: rawValue)).map { String(cString: $0) } ?? "map_type(\(rawValue))"
    }
}

/// `BPF_MAP_UPDATE_ELEM` flags. `.any` (no flags) creates or replaces.
public struct BPFMapUpdateFlags: OptionSet, Sendable, Hashable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// BPF_ANY: create or update.
    public static let any: BPFMapUpdateFlags = []
    /// BPF_NOEXIST: only create (EEXIST if present).
    public static let noExist = BPFMapUpdateFlags(rawValue: UInt64(BPF_NOEXIST))
    /// BPF_EXIST: only update (ENOENT if absent).
    public static let exist = BPFMapUpdateFlags(rawValue: UInt64(BPF_EXIST))
    /// BPF_F_LOCK: take the value's `bpf_spin_lock` while copying (also valid for lookups).
    public static let lock = BPFMapUpdateFlags(rawValue: UInt64(BPF_F_LOCK))
}

/// What the kernel reports about a map.
public struct MapInfo: Sendable, Equatable {
    public var id: UInt32
    public var name: String
    public var type: BPFMapType
    public var keySize: UInt32
    public var valueSize: UInt32
    public var maxEntries: UInt32
    public var flags: UInt32
    public var btfID: UInt32
}

/// A BPF map, used through its kernel fd (all operations are syscalls, safe from any thread).
///
/// Raw operations take and return bytes. Typed operations check, like aya's typed maps, that
/// `MemoryLayout<K>` / `MemoryLayout<V>` match the map's key and value sizes (either `size` or
/// `stride` may match, since Swift's `size` excludes trailing padding that C's `sizeof` counts)
/// and throw `EINVAL` naming both sizes otherwise.
///
/// Per-CPU maps store one value per *possible* CPU; the kernel copies
/// `possibleCPUs × round_up(valueSize, 8)` bytes for every lookup. Raw ``lookup(key:flags:)``
/// returns that whole buffer for them; use ``lookupPerCPU(_:as:)`` to split it.
public struct BPFMap: Sendable {
    public let name: String
    public let fd: Int32
    public let type: BPFMapType
    public let keySize: UInt32
    public let valueSize: UInt32
    public let maxEntries: UInt32
    public let flags: UInt32
    let owner: any AnyObject & Sendable

    init(name: String, fd: Int32, type: BPFMapType, keySize: UInt32, valueSize: UInt32,
         maxEntries: UInt32, flags: UInt32, owner: any AnyObject & Sendable) {
        self.name = name
        self.fd = fd
        self.type = type
        self.keySize = keySize
        self.valueSize = valueSize
        self.maxEntries = maxEntries
        self.flags = flags
        self.owner = owner
    }

    /// Opens a pinned map (`bpf_obj_get`), reading its shape with `bpf_obj_get_info_by_fd`.
    public static func openPinned(_ path: String) throws(BPFError) -> BPFMap {
        let fd = try check(path.withCString { bpf_obj_get($0) }, "bpf_obj_get", "pin \(path)")
        let owner = OwnedDescriptor(fd)
        return try BPFMap(fd: fd, owner: owner, context: "pin \(path)")
    }

    /// Opens a map by id (`bpf_map_get_fd_by_id`).
    public static func open(id: UInt32) throws(BPFError) -> BPFMap {
        let fd = try check(bpf_map_get_fd_by_id(id), "bpf_map_get_fd_by_id", "map id \(id)")
        let owner = OwnedDescriptor(fd)
        return try BPFMap(fd: fd, owner: owner, context: "map id \(id)")
    }

    private init(fd: Int32, owner: OwnedDescriptor, context: String) throws(BPFError) {
        let info = try BPFMap.mapInfo(fd: fd, context: context)
        self.init(
            name: String(fixedCString: info.name), fd: fd, type: BPFMapType(rawValue: info.type),
            keySize: info.key_size, valueSize: info.value_size, maxEntries: info.max_entries,
            flags: info.map_flags, owner: owner)
    }

    static func mapInfo(fd: Int32, context: String) throws(BPFError) -> bpf_map_info {
        let (r, info) = withZeroed(bpf_map_info.self) { p in
            var len = UInt32(MemoryLayout<bpf_map_info>.size)
            return (bpf_obj_get_info_by_fd(fd, p, &len), p.pointee)
        }
        try check(r, "bpf_obj_get_info_by_fd", context)
        return info
    }

    /// What the kernel reports about this map.
    public func info() throws(BPFError) -> MapInfo {
        let i = try BPFMap.mapInfo(fd: fd, context: "map \(name)")
        return MapInfo(id: i.id, name: String(fixedCString: i.name), type: BPFMapType(rawValue: i.type),
                       keySize: i.key_size, valueSize: i.value_size, maxEntries: i.max_entries,
                       flags: i.map_flags, btfID: i.btf_id)
    }

    /// Number of possible CPUs (`libbpf_num_possible_cpus`), the per-CPU value count.
    public static func possibleCPUs() throws(BPFError) -> Int {
        let n = libbpf_num_possible_cpus()
        try check(n, "libbpf_num_possible_cpus", "/sys/devices/system/cpu/possible")
        return Int(n)
    }

    /// Bytes per CPU slot in per-CPU values: `round_up(valueSize, 8)`.
    public var perCPUStride: Int { (Int(valueSize) + 7) & ~7 }

    /// Size of the buffer a lookup fills: `valueSize`, or `possibleCPUs × perCPUStride` for per-CPU maps.
    public func valueBufferSize() throws(BPFError) -> Int {
        type.isPerCPU ? try BPFMap.possibleCPUs() * perCPUStride : Int(valueSize)
    }

    /// Pins the map in bpffs (`bpf_obj_pin`); fails with EEXIST if the path exists.
    public func pin(at path: String) throws(BPFError) {
        try check(path.withCString { bpf_obj_pin(fd, $0) }, "bpf_obj_pin", "map \(name) at \(path)")
    }

    /// Makes the map read-only for user space and programs' writes rejected by the verifier (`bpf_map_freeze`).
    public func freeze() throws(BPFError) {
        try check(bpf_map_freeze(fd), "bpf_map_freeze", "map \(name)")
    }

    // MARK: Raw bytes

    /// The value for `key`, or nil if there is none (ENOENT).
    public func lookup(key: [UInt8], flags: BPFMapUpdateFlags = .any) throws(BPFError) -> [UInt8]? {
        try checkKey(key.count)
        var value = [UInt8](repeating: 0, count: try valueBufferSize())
        let r = key.withUnsafeBytes { k in
            value.withUnsafeMutableBytes { v in bpf_map_lookup_elem_flags(fd, k.baseAddress, v.baseAddress, flags.rawValue) }
        }
        if r == -ENOENT { return nil }
        try check(r, "bpf_map_lookup_elem", describe(key: key))
        return value
    }

    /// Creates or replaces the value for `key` (see ``BPFMapUpdateFlags``).
    /// For per-CPU maps `value` is the whole `valueBufferSize()` buffer.
    public func update(key: [UInt8], value: [UInt8], flags: BPFMapUpdateFlags = .any) throws(BPFError) {
        try checkKey(key.count)
        let expected = try valueBufferSize()
        guard value.count == expected else {
            throw BPFError(operation: "bpf_map_update_elem", errno: EINVAL,
                           context: "\(describe(key: key)): value is \(value.count) bytes, map needs \(expected)")
        }
        let r = key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in bpf_map_update_elem(fd, k.baseAddress, v.baseAddress, flags.rawValue) }
        }
        try check(r, "bpf_map_update_elem", describe(key: key))
    }

    /// Deletes `key`; returns false if it was not there (ENOENT). Array maps cannot delete (EINVAL).
    @discardableResult
    public func delete(key: [UInt8]) throws(BPFError) -> Bool {
        try checkKey(key.count)
        let r = key.withUnsafeBytes { bpf_map_delete_elem(fd, $0.baseAddress) }
        if r == -ENOENT { return false }
        try check(r, "bpf_map_delete_elem", describe(key: key))
        return true
    }

    /// All keys, by `bpf_map_get_next_key` iteration (a snapshot only if nobody writes meanwhile).
    public func keys() throws(BPFError) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var current: [UInt8]? = nil
        var next = [UInt8](repeating: 0, count: Int(keySize))
        // Concurrent deletes can restart iteration in hash maps; bound the walk.
        let limit = max(Int(maxEntries), 1) * 2 + 16
        while out.count < limit {
            let r: Int32 = next.withUnsafeMutableBytes { n in
                if let cur = current {
                    return cur.withUnsafeBytes { bpf_map_get_next_key(fd, $0.baseAddress, n.baseAddress) }
                }
                return bpf_map_get_next_key(fd, nil, n.baseAddress)
            }
            if r == -ENOENT { break }
            try check(r, "bpf_map_get_next_key", "map \(name)")
            out.append(next)
            current = next
        }
        return out
    }

    /// Writes `count` entries, packed back to back in `keys` (`count × keySize` bytes) and `values`
    /// (`count × valueBufferSize()` bytes), with `bpf_map_update_batch`: one syscall instead of one per entry.
    /// Map types without a batch update on the running kernel (ENOTSUPP) are written entry by entry. If the kernel stops part way, the rest is written entry by entry, so an error names its key
    /// as ``update(key:value:flags:)`` does.
    public func updateBatch(keys: [UInt8], values: [UInt8], count: Int, flags: BPFMapUpdateFlags = .any) throws(BPFError) {
        let k = Int(keySize), v = try valueBufferSize()
        guard keys.count == count * k, values.count == count * v else {
            throw BPFError(operation: "bpf_map_update_batch", errno: EINVAL,
                           context: "map \(name): \(count) entries need \(count * k) key and \(count * v) value bytes, got \(keys.count) and \(values.count)")
        }
        var done = 0
        if count > 0 {
            var n = UInt32(count)
            let r: Int32 = keys.withUnsafeBytes { kB in
                values.withUnsafeBytes { vB in
                    withOptions(bpf_map_batch_opts.self) { opts in
                        opts.pointee.elem_flags = flags.rawValue
                        return bpf_map_update_batch(fd, kB.baseAddress, vB.baseAddress, &n, opts)
                    }
                }
            }
            done = r == 0 ? count : min(Int(n), count)
            if r == -524 || r == -EOPNOTSUPP { done = 0 }
        }
        for i in done..<count {
            try update(key: Array(keys[(i * k)..<((i + 1) * k)]), value: Array(values[(i * v)..<((i + 1) * v)]), flags: flags)
        }
    }

    /// Deletes `count` keys packed back to back in `keys` with `bpf_map_delete_batch` (hash maps), entry by
    /// entry where the kernel has no batch delete. Every key must exist (ENOENT otherwise).
    public func deleteBatch(keys: [UInt8], count: Int) throws(BPFError) {
        let k = Int(keySize)
        guard keys.count == count * k else {
            throw BPFError(operation: "bpf_map_delete_batch", errno: EINVAL,
                           context: "map \(name): \(count) keys need \(count * k) bytes, got \(keys.count)")
        }
        var done = 0
        if count > 0 {
            var n = UInt32(count)
            let r: Int32 = keys.withUnsafeBytes { kB in
                withOptions(bpf_map_batch_opts.self) { bpf_map_delete_batch(fd, kB.baseAddress, &n, $0) }
            }
            done = r == 0 ? count : min(Int(n), count)
            if r == -524 || r == -EOPNOTSUPP { done = 0 }
        }
        for i in done..<count {
            let key = Array(keys[(i * k)..<((i + 1) * k)])
            guard try delete(key: key) else {
                throw BPFError(operation: "bpf_map_delete_elem", errno: ENOENT, context: describe(key: key))
            }
        }
    }

    /// Writes typed entries in few syscalls (see ``updateBatch(keys:values:count:flags:)``).
    public func updateBatch<K: BitwiseCopyable, V: BitwiseCopyable>(keys: [K], values: [V], flags: BPFMapUpdateFlags = .any) throws(BPFError) {
        try checkTypes(K.self, V.self, operation: "updateBatch")
        guard !type.isPerCPU else {
            throw BPFError(operation: "BPFMap.updateBatch", errno: EINVAL, context: "map \(name) is \(type): per-CPU values are not batched here")
        }
        guard keys.count == values.count else {
            throw BPFError(operation: "BPFMap.updateBatch", errno: EINVAL, context: "map \(name): \(keys.count) keys, \(values.count) values")
        }
        try updateBatch(keys: pack(keys, size: Int(keySize)), values: pack(values, size: Int(valueSize)), count: keys.count, flags: flags)
    }

    /// Rows from `bpf_map_lookup_batch`: keys and value buffers (per-CPU maps: whole per-CPU buffers).
    /// Works for hash and array maps (kernel ≥ 5.6); batching ends when the kernel reports ENOENT.
    public func lookupBatch(chunk: UInt32 = 0) throws(BPFError) -> [(key: [UInt8], value: [UInt8])] {
        let rows = try lookupBatchPacked(chunk: chunk)
        return (0..<rows.count).map { (Array(rows.key($0)), Array(rows.value($0))) }
    }

    /// Every row from `bpf_map_lookup_batch`, packed back to back: no array per row, for callers that read
    /// thousands of rows and keep few of them.
    public func lookupBatchPacked(chunk: UInt32 = 0) throws(BPFError) -> PackedRows {
        let rowValue = try valueBufferSize()
        let k = Int(keySize)
        let perCall = Int(chunk == 0 ? min(max(maxEntries, 1), 4096) : chunk)
        var keysBuf = [UInt8](repeating: 0, count: perCall * k)
        var valuesBuf = [UInt8](repeating: 0, count: perCall * rowValue)
        // The batch token is a key for arrays and a bucket index (u32) for hashes.
        let tokenSize = max(k, 8)
        var inToken = [UInt8](repeating: 0, count: tokenSize)
        var outToken = [UInt8](repeating: 0, count: tokenSize)
        var first = true
        var rows = PackedRows(keySize: k, valueSize: rowValue)
        while true {
            var count = UInt32(perCall)
            let r: Int32 = inToken.withUnsafeMutableBytes { inB in
                outToken.withUnsafeMutableBytes { outB in
                    keysBuf.withUnsafeMutableBytes { kB in
                        valuesBuf.withUnsafeMutableBytes { vB in
                            withOptions(bpf_map_batch_opts.self) { opts in
                                bpf_map_lookup_batch(fd, first ? nil : inB.baseAddress, outB.baseAddress,
                                                     kB.baseAddress, vB.baseAddress, &count, opts)
                            }
                        }
                    }
                }
            }
            let done = r == -ENOENT
            if !done { try check(r, "bpf_map_lookup_batch", "map \(name)") }
            let n = min(Int(count), perCall)
            rows.keys += keysBuf[0..<(n * k)]
            rows.values += valuesBuf[0..<(n * rowValue)]
            rows.count += n
            if done || n == 0 { break }
            inToken = outToken
            first = false
        }
        return rows
    }

    // MARK: Typed

    /// The value for `key` as `V`, or nil if absent.
    public func lookup<K: BitwiseCopyable, V: BitwiseCopyable>(_ key: K, as: V.Type, flags: BPFMapUpdateFlags = .any) throws(BPFError) -> V? {
        try checkTypes(K.self, V.self, operation: "lookup")
        guard !type.isPerCPU else {
            throw BPFError(operation: "BPFMap.lookup", errno: EINVAL, context: "map \(name) is \(type): use lookupPerCPU")
        }
        guard let bytes = try lookup(key: encode(key, size: Int(keySize)), flags: flags) else { return nil }
        return bytes.withUnsafeBytes { $0.loadUnaligned(as: V.self) }
    }

    /// Creates or replaces the value for `key`.
    public func update<K: BitwiseCopyable, V: BitwiseCopyable>(_ key: K, _ value: V, flags: BPFMapUpdateFlags = .any) throws(BPFError) {
        try checkTypes(K.self, V.self, operation: "update")
        guard !type.isPerCPU else {
            throw BPFError(operation: "BPFMap.update", errno: EINVAL, context: "map \(name) is \(type): use updatePerCPU")
        }
        try update(key: encode(key, size: Int(keySize)), value: encode(value, size: Int(valueSize)), flags: flags)
    }

    /// Deletes `key`; false if it was absent.
    @discardableResult
    public func delete<K: BitwiseCopyable>(_ key: K) throws(BPFError) -> Bool {
        try checkSize(K.self, Int(keySize), what: "key", operation: "delete")
        return try delete(key: encode(key, size: Int(keySize)))
    }

    /// All keys as `K`.
    public func keys<K: BitwiseCopyable>(as: K.Type) throws(BPFError) -> [K] {
        try checkSize(K.self, Int(keySize), what: "key", operation: "keys")
        return try keys().map { $0.withUnsafeBytes { $0.loadUnaligned(as: K.self) } }
    }

    /// One value per possible CPU for `key` (empty if the key is absent from a per-CPU hash).
    public func lookupPerCPU<K: BitwiseCopyable, V: BitwiseCopyable>(_ key: K, as: V.Type) throws(BPFError) -> [V] {
        try checkTypes(K.self, V.self, operation: "lookupPerCPU")
        try requirePerCPU("lookupPerCPU")
        guard let bytes = try lookup(key: encode(key, size: Int(keySize))) else { return [] }
        return splitPerCPU(bytes, as: V.self)
    }

    /// Sets every CPU's value for `key`; `values.count` must equal ``possibleCPUs()``.
    public func updatePerCPU<K: BitwiseCopyable, V: BitwiseCopyable>(_ key: K, _ values: [V], flags: BPFMapUpdateFlags = .any) throws(BPFError) {
        try checkTypes(K.self, V.self, operation: "updatePerCPU")
        try requirePerCPU("updatePerCPU")
        let cpus = try BPFMap.possibleCPUs()
        guard values.count == cpus else {
            throw BPFError(operation: "BPFMap.updatePerCPU", errno: EINVAL,
                           context: "map \(name): \(values.count) values for \(cpus) possible CPUs")
        }
        let stride = perCPUStride
        var buffer = [UInt8](repeating: 0, count: cpus * stride)
        buffer.withUnsafeMutableBytes { b in
            for (i, v) in values.enumerated() {
                withUnsafeBytes(of: v) { src in
                    let n = min(src.count, Int(valueSize))
                    b.baseAddress!.advanced(by: i * stride).copyMemory(from: src.baseAddress!, byteCount: n)
                }
            }
        }
        try update(key: encode(key, size: Int(keySize)), value: buffer, flags: flags)
    }

    /// Sets every CPU's value for `key` to zero bytes (e.g. to reset a per-CPU counter row).
    public func zeroPerCPU<K: BitwiseCopyable>(_ key: K) throws(BPFError) {
        try checkSize(K.self, Int(keySize), what: "key", operation: "zeroPerCPU")
        try requirePerCPU("zeroPerCPU")
        try update(key: encode(key, size: Int(keySize)), value: [UInt8](repeating: 0, count: try valueBufferSize()))
    }

    /// Every row of a per-CPU map in few syscalls (`bpf_map_lookup_batch`): each key with one
    /// value per possible CPU. For a PERCPU_ARRAY the rows come in index order.
    public func lookupBatchPerCPU<K: BitwiseCopyable, V: BitwiseCopyable>(keyType: K.Type, as: V.Type) throws(BPFError) -> [(key: K, values: [V])] {
        try checkTypes(K.self, V.self, operation: "lookupBatchPerCPU")
        try requirePerCPU("lookupBatchPerCPU")
        return try lookupBatch().map { row in
            (row.key.withUnsafeBytes { $0.loadUnaligned(as: K.self) }, splitPerCPU(row.value, as: V.self))
        }
    }

    /// Every row of a per-CPU map with its CPUs' values folded into one by `add` (counters summed across CPUs),
    /// read straight from the batch buffers. Inlinable, so it is specialized for the caller's types: through the
    /// generic path, `icmpwall stats` spent more on an array per row and CPU than on the syscall.
    @inlinable
    public func lookupBatchPerCPUFolded<K: BitwiseCopyable, V: BitwiseCopyable>(
        keyType: K.Type, as: V.Type, _ add: (inout V, V) -> Void
    ) throws(BPFError) -> [(key: K, value: V)] {
        try checkPerCPURows(K.self, V.self, operation: "lookupBatchPerCPUFolded")
        let rows = try lookupBatchPacked()
        let stride = perCPUStride, cpus = max(rows.valueSize / stride, 1)
        var out: [(key: K, value: V)] = []
        out.reserveCapacity(rows.count)
        rows.keys.withUnsafeBytes { keys in
            rows.values.withUnsafeBytes { values in
                for i in 0..<rows.count {
                    let base = i * rows.valueSize
                    var folded = values.loadUnaligned(fromByteOffset: base, as: V.self)
                    for cpu in 1..<cpus { add(&folded, values.loadUnaligned(fromByteOffset: base + cpu * stride, as: V.self)) }
                    out.append((keys.loadUnaligned(fromByteOffset: i * rows.keySize, as: K.self), folded))
                }
            }
        }
        return out
    }

    /// Every row of a non-per-CPU map (`bpf_map_lookup_batch`).
    public func lookupBatch<K: BitwiseCopyable, V: BitwiseCopyable>(keyType: K.Type, as: V.Type) throws(BPFError) -> [(key: K, value: V)] {
        try checkTypes(K.self, V.self, operation: "lookupBatch")
        guard !type.isPerCPU else {
            throw BPFError(operation: "BPFMap.lookupBatch", errno: EINVAL, context: "map \(name) is \(type): use lookupBatchPerCPU")
        }
        return try lookupBatch().map { row in
            (row.key.withUnsafeBytes { $0.loadUnaligned(as: K.self) }, row.value.withUnsafeBytes { $0.loadUnaligned(as: V.self) })
        }
    }

    // MARK: Helpers

    private func splitPerCPU<V: BitwiseCopyable>(_ bytes: [UInt8], as: V.Type) -> [V] {
        let stride = perCPUStride
        let cpus = bytes.count / stride
        return bytes.withUnsafeBytes { raw in
            // The size checks guarantee MemoryLayout<V>.size <= valueSize <= stride.
            (0..<cpus).map { raw.loadUnaligned(fromByteOffset: $0 * stride, as: V.self) }
        }
    }

    private func requirePerCPU(_ operation: String) throws(BPFError) {
        guard type.isPerCPU else {
            throw BPFError(operation: "BPFMap.\(operation)", errno: EINVAL, context: "map \(name) is \(type), not a per-CPU map")
        }
    }

    private func checkKey(_ count: Int) throws(BPFError) {
        guard count == Int(keySize) else {
            throw BPFError(operation: "BPFMap", errno: EINVAL, context: "map \(name): key is \(count) bytes, map key size is \(keySize)")
        }
    }

    /// The checks of a typed per-CPU read, for inlinable callers.
    @usableFromInline
    func checkPerCPURows<K, V>(_ k: K.Type, _ v: V.Type, operation: String) throws(BPFError) {
        try checkTypes(k, v, operation: operation)
        try requirePerCPU(operation)
    }

    private func checkTypes<K, V>(_ k: K.Type, _ v: V.Type, operation: String) throws(BPFError) {
        try checkSize(K.self, Int(keySize), what: "key", operation: operation)
        try checkSize(V.self, Int(valueSize), what: "value", operation: operation)
    }

    private func checkSize<T>(_ t: T.Type, _ expected: Int, what: String, operation: String) throws(BPFError) {
        let size = MemoryLayout<T>.size, stride = MemoryLayout<T>.stride
        guard size == expected || stride == expected else {
            throw BPFError(operation: "BPFMap.\(operation)", errno: EINVAL,
                           context: "map \(name): \(what) type \(T.self) is \(size) bytes, map \(what) size is \(expected)")
        }
    }

    /// Items back to back, each cut or zero-padded to `size` bytes (C's `sizeof` may count tail padding).
    private func pack<T: BitwiseCopyable>(_ items: [T], size: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: items.count * size)
        let n = min(size, MemoryLayout<T>.size)
        bytes.withUnsafeMutableBytes { out in
            items.withUnsafeBytes { src in
                for i in items.indices {
                    out.baseAddress!.advanced(by: i * size)
                        .copyMemory(from: src.baseAddress!.advanced(by: i * MemoryLayout<T>.stride), byteCount: n)
                }
            }
        }
        return bytes
    }

    private func encode<T: BitwiseCopyable>(_ value: T, size: Int) -> [UInt8] {
        var bytes = withUnsafeBytes(of: value) { Array($0.prefix(size)) }
        if bytes.count < size { bytes += [UInt8](repeating: 0, count: size - bytes.count) }
        return bytes
    }

    private func describe(key: [UInt8]) -> String {
        if key.count <= 8 {
            var v: UInt64 = 0
            for (i, b) in key.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
            return "map \(name) key \(v)"
        }
        return "map \(name) key \(key.map { String($0, radix: 16) }.joined(separator: ":"))"
    }
}

/// Map rows packed back to back, `count` keys of `keySize` bytes and `count` values of `valueSize` bytes (for
/// per-CPU maps, the whole per-CPU buffer): the layout the batch calls read and write.
public struct PackedRows: Sendable {
    public let keySize: Int
    public let valueSize: Int
    public var keys: [UInt8] = []
    public var values: [UInt8] = []
    public var count = 0

    public init(keySize: Int, valueSize: Int) {
        self.keySize = keySize
        self.valueSize = valueSize
    }

    /// Appends one row; its key and value must have the sizes the rows were made for.
    public mutating func append<K: Collection<UInt8>, V: Collection<UInt8>>(key: K, value: V) {
        precondition(key.count == keySize && value.count == valueSize,
                     "row of \(key.count)+\(value.count) bytes, rows take \(keySize)+\(valueSize)")
        keys += key
        values += value
        count += 1
    }

    public func key(_ i: Int) -> ArraySlice<UInt8> { keys[(i * keySize)..<((i + 1) * keySize)] }
    public func value(_ i: Int) -> ArraySlice<UInt8> { values[(i * valueSize)..<((i + 1) * valueSize)] }
}
