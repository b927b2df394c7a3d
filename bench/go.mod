module github.com/agentidp/agentidp/bench

go 1.26
