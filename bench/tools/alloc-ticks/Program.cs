using Microsoft.Diagnostics.Tracing;
using Microsoft.Diagnostics.Tracing.Etlx;
using Microsoft.Diagnostics.Tracing.Parsers.Clr;
// Usage: alloc-ticks TRACE.nettrace [TOP_STACKS]. See README.md.
if (args.Length == 0)
{
    Console.Error.WriteLine("usage: alloc-ticks TRACE.nettrace [TOP_STACKS]");
    return 64;
}

var etlx = TraceLog.CreateFromEventPipeDataFile(args[0]);
using var log = new TraceLog(etlx);
var byType = new Dictionary<string, long>();
var byStack = new Dictionary<string, long>();
long total = 0;
foreach (var ev in log.Events)
{
    if (ev is GCAllocationTickTraceData t)
    {
        var amount = t.AllocationAmount64;
        total += amount;
        byType[t.TypeName] = byType.GetValueOrDefault(t.TypeName) + amount;
        var stack = ev.CallStack();
        var frames = new List<string>();
        for (var s = stack; s != null && frames.Count < 8; s = s.Caller)
        {
            var name = s.CodeAddress.FullMethodName;
            if (string.IsNullOrEmpty(name)) name = "?";
            frames.Add(name.Length > 110 ? name[..110] : name);
        }
        var key = t.TypeName + "\n      " + string.Join("\n      ", frames);
        byStack[key] = byStack.GetValueOrDefault(key) + amount;
    }
}
Console.WriteLine($"total sampled {total / 1e6:F1} MB");
foreach (var kv in byType.OrderByDescending(k => k.Value).Take(25)) Console.WriteLine($"{kv.Value * 100.0 / total,6:F1}%  {kv.Key}");
Console.WriteLine();
foreach (var kv in byStack.OrderByDescending(k => k.Value).Take(int.Parse(args.Length > 1 ? args[1] : "25"))) Console.WriteLine($"{kv.Value * 100.0 / total,6:F1}%  {kv.Key}\n");
return 0;
