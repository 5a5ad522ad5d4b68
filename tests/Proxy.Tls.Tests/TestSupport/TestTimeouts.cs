namespace Proxy.Tls.Tests.TestSupport;

/// <summary>Upper bounds for every await in tests: a hang fails fast instead of stalling CI.</summary>
internal static class TestTimeouts
{
    public static readonly TimeSpan Short = TimeSpan.FromSeconds(10);
}
