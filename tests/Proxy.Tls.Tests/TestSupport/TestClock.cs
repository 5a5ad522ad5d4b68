namespace Proxy.Tls.Tests.TestSupport;

/// <summary>A <see cref="TimeProvider"/> whose wall clock is set by the test (timers are the system's).</summary>
internal sealed class TestClock(DateTimeOffset now) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = now;

    public override DateTimeOffset GetUtcNow() => Now;
}
