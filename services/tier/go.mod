module github.com/agentidp/agentidp/services/tier

go 1.26
