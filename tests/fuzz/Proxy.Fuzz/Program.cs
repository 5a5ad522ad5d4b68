using SharpFuzz;

namespace Proxy.Fuzz;

/// <summary>
/// Entry point. <c>Proxy.Fuzz TARGET</c> runs TARGET under afl-fuzz (SharpFuzz persistent mode);
/// <c>Proxy.Fuzz TARGET FILE...</c> replays inputs once each and prints the outcome (triage, minimizing);
/// <c>Proxy.Fuzz seeds SHARED_DATA TLS_VECTORS OUT</c> writes the seed corpora.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length == 4 && args[0] == "seeds")
        {
            Seeds.Write(args[1], args[2], args[3]);
            return 0;
        }

        if (args.Length == 0 || !Targets.All.TryGetValue(args[0], out var target))
        {
            Console.Error.WriteLine($"usage: Proxy.Fuzz TARGET [FILE...] | seeds SHARED_DATA TLS_VECTORS OUT; targets: {string.Join(", ", Targets.All.Keys)}");
            return 2;
        }

        if (args.Length == 1)
        {
            Fuzzer.Run(stream =>
            {
                using var copy = new MemoryStream();
                stream.CopyTo(copy);
                target(copy.ToArray());
            });
            return 0;
        }

        var failures = 0;
        foreach (var file in args.Skip(1))
        {
            try
            {
                target(File.ReadAllBytes(file));
                Console.WriteLine($"ok    {file}");
            }
            catch (Exception e)
            {
                failures++;
                Console.WriteLine($"CRASH {file}: {e.GetType().Name}: {e.Message}");
                Console.WriteLine(e.StackTrace);
            }
        }

        return failures == 0 ? 0 : 1;
    }
}

/// <summary>The fuzz targets by name.</summary>
internal static class Targets
{
    public static IReadOnlyDictionary<string, Action<byte[]>> All { get; } = new Dictionary<string, Action<byte[]>>(StringComparer.Ordinal)
    {
        ["http1-head"] = Http1HeadTarget.Run,
        ["http1-chunked"] = ChunkedTarget.Run,
        ["http2-frames"] = Http2FramesTarget.Run,
        ["hpack"] = HpackTarget.Run,
        ["clienthello"] = ClientHelloTarget.Run,
    };
}

/// <summary>
/// A parser broke its own contract (outcome depends on segmentation, incomplete input refused, progress lost...).
/// Not caught by the harness: afl-fuzz records it as a crash like any unexpected exception.
/// </summary>
internal sealed class ContractViolationException : Exception
{
    public ContractViolationException(string message)
        : base(message)
    {
    }

    public ContractViolationException()
    {
    }

    public ContractViolationException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new ContractViolationException(message);
        }
    }

    public static void Equal(string expected, string actual, string what)
    {
        if (!string.Equals(expected, actual, StringComparison.Ordinal))
        {
            throw new ContractViolationException($"{what}: expected <{expected}> but got <{actual}>");
        }
    }
}
