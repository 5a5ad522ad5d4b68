using System.Net;
using System.Text;
using Proxy.Core.Addresses;
using Proxy.Http.Forwarding;

namespace Proxy.Http.Tests.Telemetry;

internal static class TelemetryTestHelpers
{
    public static readonly TimeSpan TestTimeout = TimeSpan.FromSeconds(10);

    public static readonly UpstreamAddress Upstream = new(new IPEndPoint(IPAddress.Parse("10.1.2.3"), 8080));

    public static readonly IPEndPoint Client = new(IPAddress.Loopback, 51000);

    public static readonly IPEndPoint ClientV6 = new(IPAddress.Parse("::1"), 40000);

    /// <summary>A routed, upstream-served 200 with small bodies.</summary>
    public static HttpRequestRecord Ok(string listener = "outbound", string service = "api", string route = "r1", double ms = 2.5) => new()
    {
        Listener = listener,
        Service = service,
        Route = route,
        Subset = "v2",
        Routed = true,
        Method = "GET"u8,
        Authority = "api.example.com"u8,
        Target = "/items?id=7"u8,
        Protocol = "HTTP/1.1"u8,
        StatusCode = 200,
        RequestBytes = 0,
        ResponseBytes = 13,
        Duration = TimeSpan.FromMilliseconds(ms),
        UpstreamDuration = TimeSpan.FromMilliseconds(ms / 2),
        Endpoint = Upstream,
        Client = Client,
        Attempts = 1,
    };

    /// <summary>A proxy-made response with a reason, not routed (e.g. 404 no_route) or routed (503 no_endpoint).</summary>
    public static HttpRequestRecord ProxyMade(int status, string error, bool routed, string service = "api", string route = "r1") => new()
    {
        Listener = "outbound",
        Service = service,
        Route = route,
        Routed = routed,
        Method = "POST"u8,
        Authority = "api.example.com"u8,
        Target = "/orders"u8,
        Protocol = "HTTP/1.1"u8,
        StatusCode = status,
        RequestBytes = 5,
        Duration = TimeSpan.FromMilliseconds(0.2),
        Error = error,
        ProxyMade = true,
    };

    public static string[] Lines(byte[] output) =>
        Encoding.UTF8.GetString(output).Split('\n', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>A TimeProvider that always says <paramref name="now"/>.</summary>
    public sealed class FixedTime(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    /// <summary>
    /// A sink the test controls: every write is kept; with <see cref="Block"/> set, a write signals
    /// <see cref="WriteStarted"/> and then waits until <see cref="Release"/> (the slow sink of the drop tests).
    /// </summary>
    public sealed class ControlledStream : Stream
    {
        private readonly MemoryStream _inner = new();
        private readonly ManualResetEventSlim _released = new(initialState: true);
        private readonly object _lock = new();

        public TaskCompletionSource WriteStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Exception? ThrowOnWrite { get; set; }

        public int Writes { get; private set; }

        public void Block() => _released.Reset();

        public void Release() => _released.Set();

        public byte[] Written()
        {
            lock (_lock)
            {
                return _inner.ToArray();
            }
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            WriteStarted.TrySetResult();
            if (!_released.Wait(TestTimeout))
            {
                throw new TimeoutException("The test never released the stream.");
            }

            lock (_lock)
            {
                Writes++;
                if (ThrowOnWrite is { } ex)
                {
                    throw ex;
                }

                _inner.Write(buffer, offset, count);
            }
        }

        public override void Flush()
        {
        }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _released.Dispose();
                _inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
