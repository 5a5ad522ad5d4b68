namespace Proxy.Core.Transport;

/// <summary>
/// Process-wide switch for how .NET's socket engine completes operations on Linux.
/// </summary>
/// <remarks>
/// .NET reads <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS</c> exactly once, in a static initializer that
/// runs the first time any socket is used in the process. With it set to 1, a completed receive or send
/// runs its continuation directly on the epoll thread instead of hopping to the thread pool: measured
/// -27% proxy CPU per request at 32 connections and -46% at one connection (../shared/PERFORMANCE.md).
/// The price is that nothing on that path may block. Call <see cref="Configure(bool)"/> at the very
/// start of <c>Main</c>, before any <c>Socket</c>, <c>HttpClient</c> or Kestrel object exists; calling it
/// later has no effect on the running process. It only sets the environment variable (children inherit it).
/// </remarks>
public static class SocketEngineSetup
{
    /// <summary>The variable .NET's socket engine reads once at start-up.</summary>
    public const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Inline socket completions exactly when the transport schedules inline (<see cref="SocketTransportOptions.InlineScheduling"/>).</summary>
    public static void Configure(SocketTransportOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Configure(options.InlineScheduling);
    }

    /// <summary>Sets <see cref="InlineCompletionsVariable"/> to 1 (inline) or 0 (thread pool).</summary>
    public static void Configure(bool inlineCompletions) =>
        Environment.SetEnvironmentVariable(InlineCompletionsVariable, inlineCompletions ? "1" : "0");
}
