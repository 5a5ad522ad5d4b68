using System.Buffers.Binary;
using System.Text;

namespace Proxy.Tls.Tests.ClientHello;

/// <summary>What a captured vector must parse to (see Vectors/README.md).</summary>
public sealed record VectorExpectation(string Name, string? ServerName, string[] Alpn, bool OffersTls13);

/// <summary>The committed ClientHello vectors and byte-level helpers to reshape and mutate them.</summary>
internal static class ClientHelloVectors
{
    public static readonly VectorExpectation[] All =
    [
        new("sslstream-tls13-h2-http11", "backend-a.example.com", ["h2", "http/1.1"], true),
        new("sslstream-tls12-h2-http11", "backend-b.example.com", ["h2", "http/1.1"], false),
        new("curl-http2", "curl.example.com", ["h2", "http/1.1"], true),
        new("curl-http11", "curl.example.com", ["http/1.1"], true),
        new("curl-http11-tls12", "mixed.case.example.com", ["http/1.1"], false),
        new("openssl-h2-http11", "openssl.example.com", ["h2", "http/1.1"], true),
        new("openssl-no-sni", null, [], true),
    ];

    public static IEnumerable<object[]> Names => All.Select(static v => new object[] { v.Name });

    public static VectorExpectation Expectation(string name) => All.Single(v => v.Name == name);

    public static byte[] Load(string name)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "ClientHello", "Vectors", name + ".hex");
        return Convert.FromHexString(File.ReadAllText(path).Trim());
    }

    /// <summary>The handshake message (header included) of a single-record vector.</summary>
    public static byte[] Message(byte[] wire)
    {
        var length = 4 + ((wire[6] << 16) | (wire[7] << 8) | wire[8]);
        return wire.AsSpan(5, length).ToArray();
    }

    /// <summary>The message cut into records of at most <paramref name="fragment"/> bytes.</summary>
    public static byte[] Fragment(byte[] message, int fragment, ushort recordVersion = 0x0301)
    {
        var output = new List<byte>();
        for (var i = 0; i < message.Length; i += fragment)
        {
            var n = Math.Min(fragment, message.Length - i);
            output.Add(22);
            output.Add((byte)(recordVersion >> 8));
            output.Add((byte)recordVersion);
            output.Add((byte)(n >> 8));
            output.Add((byte)n);
            output.AddRange(message.AsSpan(i, n));
        }

        return [.. output];
    }

    public static byte[] Record(byte[] message) => Fragment(message, 16384);

    /// <summary>A length field inside a single-record vector: its offset, width in bytes, and what it measures.</summary>
    public readonly record struct LengthField(int Offset, int Width, string What);

    /// <summary>
    /// Every length field of a single-record ClientHello the parser checks: record, handshake, session id, cipher suites,
    /// compression methods, extensions block, each extension, and the inner lists of server_name, ALPN and
    /// supported_versions.
    /// </summary>
    public static List<LengthField> LengthFields(byte[] wire)
    {
        var fields = new List<LengthField> { new(3, 2, "record"), new(6, 3, "handshake") };
        var p = 9 + 2 + 32;
        fields.Add(new(p, 1, "session_id"));
        p += 1 + wire[p];
        fields.Add(new(p, 2, "cipher_suites"));
        p += 2 + BinaryPrimitives.ReadUInt16BigEndian(wire.AsSpan(p));
        fields.Add(new(p, 1, "compression_methods"));
        p += 1 + wire[p];
        if (p == wire.Length)
        {
            return fields;
        }

        fields.Add(new(p, 2, "extensions"));
        p += 2;
        while (p < wire.Length)
        {
            var type = BinaryPrimitives.ReadUInt16BigEndian(wire.AsSpan(p));
            var length = BinaryPrimitives.ReadUInt16BigEndian(wire.AsSpan(p + 2));
            fields.Add(new(p + 2, 2, $"extension {type}"));
            var data = p + 4;
            switch (type)
            {
                case 0:
                    fields.Add(new(data, 2, "server_name list"));
                    fields.Add(new(data + 3, 2, "host_name"));
                    break;
                case 16:
                    fields.Add(new(data, 2, "alpn list"));
                    for (var q = data + 2; q < data + length; q += 1 + wire[q])
                    {
                        fields.Add(new(q, 1, "alpn name"));
                    }

                    break;
                case 43:
                    fields.Add(new(data, 1, "supported_versions"));
                    break;
            }

            p = data + length;
        }

        return fields;
    }

    public static string Ascii(ReadOnlySpan<byte> bytes) => Encoding.ASCII.GetString(bytes);
}
