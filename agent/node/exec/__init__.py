"""Running kernels, never in the agent process: the pool of worker processes (a timeout kills and
respawns, a crash or a memory limit fails the attempt, never the agent), the worker's own main
loop, and the kernel catalogue (check 8 in the agent, execution in workers). May import:
agent.common, agent.protocol, native, agent.node.errors."""
