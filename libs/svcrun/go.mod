module github.com/agentidp/agentidp/libs/svcrun

go 1.26
