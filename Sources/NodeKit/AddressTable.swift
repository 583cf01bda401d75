/// Statements found by the address of their SQL text (see `SQLiteConnection.prepare`): an
/// open-addressing table keyed by address, with a multiplicative hash. A connection looks a
/// statement up at every statement it runs; with a thousand connections, as in the simulator,
/// its table is rarely in the processor's caches, and this one reads one slot where a
/// `Dictionary` seeds and runs SipHash and reads its bitmap, keys and values apart.
struct AddressTable<Value> {
    private var keys: [UInt]
    private var values: [Value?]
    private var shift: Int
    private(set) var count = 0

    init() {
        keys = Array(repeating: 0, count: 64)
        values = Array(repeating: nil, count: 64)
        shift = UInt.bitWidth - 6
    }

    private func slot(_ address: UInt) -> Int { Int(truncatingIfNeeded: (address &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// The value kept under `address` (never 0).
    func find(_ address: UInt) -> Value? {
        var index = slot(address)
        let mask = keys.count - 1
        while true {
            let key = keys[index]
            if key == address { return values[index] }
            if key == 0 { return nil }
            index = (index + 1) & mask
        }
    }

    /// Keeps `value` under `address` (never 0), replacing what was there.
    mutating func set(_ value: Value, for address: UInt) {
        precondition(address != 0, "address 0 marks an empty slot")
        if (count + 1) * 2 > keys.count { grow() }
        var index = slot(address)
        let mask = keys.count - 1
        while keys[index] != 0 && keys[index] != address { index = (index + 1) & mask }
        if keys[index] == 0 { count += 1 }
        keys[index] = address
        values[index] = value
    }

    mutating func removeAll() { self = AddressTable() }

    private mutating func grow() {
        let old = zip(keys, values).filter { $0.0 != 0 }
        keys = Array(repeating: 0, count: keys.count * 2)
        values = Array(repeating: nil, count: keys.count)
        shift -= 1
        count = 0
        for (key, value) in old { if let value { set(value, for: key) } }
    }
}
