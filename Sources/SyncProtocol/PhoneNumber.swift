/// A member's phone number in E.164 form (`+` and 8 to 15 digits). It is never stored: stores
/// and the hub keep only its keyed hash, under the key that comes with the hub's rules.
public struct PhoneNumber: Sendable, Equatable {
    public let digits: String

    public static let formHint = "phone must be in E.164 form, like +4915112345678"

    public init?(_ text: String) {
        // "+" and 8 to 15 ASCII digits, nothing else (checked on the UTF-8 bytes).
        let bytes = text.utf8
        guard bytes.first == UInt8(ascii: "+"), (9...16).contains(bytes.count),
            bytes.dropFirst().allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        else { return nil }
        self.digits = String(text.dropFirst())
    }

    /// The keyed BLAKE2b hash stored in place of the number.
    public func hash(key: SecretBytes) -> [UInt8] { Sodium.hash([Array(digits.utf8)], key: key) }

    /// The key used before the hub's first rules arrive: derived from the hub's public key,
    /// so every store and the hub agree on it.
    public static func provisionalKey(hub: PublicKey) -> SecretBytes {
        var key = Sodium.hash([Array("phone-key".utf8), hub.bytes])
        return SecretBytes(consuming: &key)
    }
}
