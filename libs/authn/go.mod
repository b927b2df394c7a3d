module github.com/agentidp/agentidp/libs/authn

go 1.26
