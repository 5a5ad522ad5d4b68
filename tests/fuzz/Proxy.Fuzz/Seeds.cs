using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Proxy.Fuzz;

/// <summary>
/// Writes the seed corpora (one folder per target) from the shared test data (llhttp cases, HPACK stories) and the
/// ClientHello vectors, plus a few hand-made HTTP/2 frame sequences. Every seed is written with the two leading
/// control bytes of <see cref="FuzzInput"/> set to 0 (defaults, unsegmented) unless noted.
/// </summary>
internal static class Seeds
{
    private const int MaxSeedBytes = 4096;

    public static void Write(string sharedData, string tlsVectors, string output)
    {
        var llhttp = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(sharedData, "llhttp-cases", "llhttp-cases.json")));
        var heads = new Corpus(Path.Combine(output, "http1-head"));
        var chunked = new Corpus(Path.Combine(output, "http1-chunked"));
        foreach (var c in llhttp.RootElement.EnumerateArray())
        {
            if (!c.GetProperty("strict_default").GetBoolean())
            {
                continue;
            }

            var raw = Convert.FromBase64String(c.GetProperty("raw_b64").GetString()!);
            var response = c.GetProperty("type").GetString() == "response";
            heads.Add(response ? (byte)0x01 : (byte)0x00, raw);
            var end = raw.AsSpan().IndexOf("\r\n\r\n"u8);
            if (end > 0 && Encoding.Latin1.GetString(raw, 0, end).Contains("chunked", StringComparison.OrdinalIgnoreCase))
            {
                chunked.Add(0, raw[(end + 4)..]);
            }
        }

        chunked.Add(0, "5\r\nhello\r\n6;name=\"v\\\"x\";flag\r\n world\r\n0\r\nTrailer-A: 1\r\nX: y\r\n\r\n"u8.ToArray());
        chunked.Add(1, "ffffffffffffffff\r\n"u8.ToArray());
        chunked.Add(0, "1\r\na\r\n0\r\n\r\n"u8.ToArray());

        var hpack = new Corpus(Path.Combine(output, "hpack"));
        foreach (var dir in Directory.GetDirectories(Path.Combine(sharedData, "hpack-test-case")).Order(StringComparer.Ordinal))
        {
            if (Path.GetFileName(dir) == "raw-data")
            {
                continue;
            }

            // A handful of stories per implementation, the first cases of each (one decoding context per seed).
            foreach (var file in Directory.GetFiles(dir, "story_*.json").Order(StringComparer.Ordinal).Take(4))
            {
                using var story = JsonDocument.Parse(File.ReadAllBytes(file));
                var seed = new List<byte>();
                foreach (var c in story.RootElement.GetProperty("cases").EnumerateArray().Take(6))
                {
                    var wire = Convert.FromHexString(c.GetProperty("wire").GetString()!);
                    if (seed.Count + wire.Length + 2 > MaxSeedBytes)
                    {
                        break;
                    }

                    seed.Add((byte)(wire.Length >> 8));
                    seed.Add((byte)wire.Length);
                    seed.AddRange(wire);
                }

                hpack.Add(0, [.. seed]);
            }
        }

        var hellos = new Corpus(Path.Combine(output, "clienthello"));
        foreach (var file in Directory.GetFiles(tlsVectors, "*.hex").Order(StringComparer.Ordinal))
        {
            var wire = Convert.FromHexString(File.ReadAllText(file).Trim());
            hellos.Add(0, wire);
            hellos.Add(0, Fragment(wire, 61));
        }

        var frames = new Corpus(Path.Combine(output, "http2-frames"));
        var block = Convert.FromHexString("82864188f439ce75c875fa5784");
        var preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray();
        frames.Add(0x03, [.. preface, .. Frame(4, 0, 0, [0, 3, 0, 0, 0, 100, 0, 4, 0, 1, 0, 0]), .. Frame(4, 1, 0, [])]);
        frames.Add(0x02, [.. Frame(1, 0x24, 1, [0x80, 0, 0, 3, 15, .. block]), .. Frame(0, 0x09, 1, [3, .. "body"u8, 0, 0, 0])]);
        frames.Add(0x06, [.. Frame(1, 0x08, 3, [2, .. block[..5], 0, 0]), .. Frame(9, 0, 3, block[5..9]), .. Frame(9, 4, 3, block[9..])]);
        frames.Add(0x02, [.. Frame(6, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8]), .. Frame(8, 0, 0, [0, 0, 1, 0]), .. Frame(8, 0, 5, [0, 0, 0, 0])]);
        frames.Add(0x02, [.. Frame(2, 0, 5, [0, 0, 0, 3, 16]), .. Frame(3, 0, 5, [0, 0, 0, 8]), .. Frame(5, 0x0c, 1, [4, 0, 0, 0, 2, .. block, 0, 0, 0, 0])]);
        frames.Add(0x02, [.. Frame(7, 0, 0, [0, 0, 0, 7, 0, 0, 0, 2, .. "bye"u8]), .. Frame(0xfa, 0xff, 9, [1, 2, 3])]);
        Console.WriteLine($"seeds: http1-head {heads.Count}, http1-chunked {chunked.Count}, hpack {hpack.Count}, clienthello {hellos.Count}, http2-frames {frames.Count}");
    }

    private static byte[] Frame(byte type, byte flags, uint stream, byte[] payload)
    {
        var frame = new byte[9 + payload.Length];
        frame[0] = (byte)(payload.Length >> 16);
        frame[1] = (byte)(payload.Length >> 8);
        frame[2] = (byte)payload.Length;
        frame[3] = type;
        frame[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(5), stream);
        payload.CopyTo(frame, 9);
        return frame;
    }

    /// <summary>The hello's handshake message re-cut into records of at most <paramref name="size"/> bytes.</summary>
    private static byte[] Fragment(byte[] wire, int size)
    {
        var message = new List<byte>();
        var pos = 0;
        while (pos + 5 <= wire.Length)
        {
            var length = (wire[pos + 3] << 8) | wire[pos + 4];
            message.AddRange(wire.AsSpan(pos + 5, Math.Min(length, wire.Length - pos - 5)).ToArray());
            pos += 5 + length;
        }

        var output = new List<byte>();
        for (var i = 0; i < message.Count; i += size)
        {
            var n = Math.Min(size, message.Count - i);
            output.AddRange([22, 3, 1, (byte)(n >> 8), (byte)n]);
            output.AddRange(message.GetRange(i, n));
        }

        return [.. output];
    }

    private sealed class Corpus
    {
        private readonly string _folder;
        private readonly HashSet<string> _seen = new(StringComparer.Ordinal);

        public Corpus(string folder)
        {
            _folder = folder;
            Directory.CreateDirectory(folder);
        }

        public int Count => _seen.Count;

        public void Add(byte control, byte[] payload)
        {
            if (payload.Length > MaxSeedBytes)
            {
                return;
            }

            byte[] seed = [control, 0, .. payload];
            if (_seen.Add(Convert.ToHexString(seed)))
            {
                File.WriteAllBytes(Path.Combine(_folder, $"seed-{_seen.Count:D3}"), seed);
            }
        }
    }
}
