module github.com/agentidp/agentidp/services/analytics

go 1.26
