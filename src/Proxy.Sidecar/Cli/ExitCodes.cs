namespace Proxy.Sidecar.Cli;

/// <summary>Exit codes, after sysexits.h.</summary>
internal static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>A runtime failure (a listener could not bind, a command failed).</summary>
    public const int Failure = 1;

    /// <summary>Bad usage: an unknown flag, a bad value, a bad config file (EX_USAGE).</summary>
    public const int Usage = 64;
}
